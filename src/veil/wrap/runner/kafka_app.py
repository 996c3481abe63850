"""The Kafka wrapper: a consumer group on KAFKA_INPUT_TOPIC, the customer's `predict` per message,
results to KAFKA_OUTPUT_TOPIC with the input's key, failures to KAFKA_DLQ_TOPIC.

At-least-once: offsets are stored only for messages whose result (or dead letter) the broker has
acknowledged. Batches are pipelined — the next batch is processed while the previous one is
being delivered — and committed strictly in order, so a crash (even kill -9) at any point
re-delivers, never loses. SIGTERM stops consuming, waits for every delivery, commits and leaves
the group.

A dead letter is the input message unchanged (key, value, headers) plus headers
`veil.error.type` (bad_json, exception, bad_result, result_too_large), `veil.error.message`,
`veil.source.topic`, `veil.source.partition`, `veil.source.offset`.

Two kinds of produce failure, two answers. A result larger than KAFKA_MESSAGE_MAX_BYTES is a
property of that one message: the producer refuses it at once, and it becomes a dead letter like
a result that is not JSON. Every other refusal (a timeout, a missing topic, a broker that says no
in its acknowledgement) says nothing about the message and would hit the next one too: the runner
stops with exit code 1 and commits nothing handled since the last acknowledged point, so a
restarted member processes those messages again.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .entry import Model
from .logs import setup_logging
from .settings import KAFKA_ENV, read_config

__all__ = ["run"]

log = logging.getLogger("veil.wrapper")

COMMIT_INTERVAL = 0.25  # seconds; a crash redoes at most this much (plus what was in flight)


class DeliveryFailed(Exception):
    pass


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("veil_kafka_messages", "Messages handled, by outcome.",
                                ["outcome"], registry=self.registry)
        self.errors = Counter("veil_kafka_errors", "Messages sent to the dead-letter topic, "
                              "by cause.", ["cause"], registry=self.registry)
        self.batch = Histogram("veil_kafka_batch_duration_seconds",
                               "Time to run predict over one batch.", registry=self.registry)
        self.in_flight = Gauge("veil_kafka_in_flight_batches",
                               "Batches produced but not yet committed.", registry=self.registry)
        self.ok = self.messages.labels("ok")
        self.dlq = self.messages.labels("dead_letter")


class _Health:
    def __init__(self) -> None:
        self.ready = False
        self.failed: str | None = None


def _serve_health(port: int, health: _Health, metrics: _Metrics) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                failed = health.failed is not None
                code, body = (500, {"status": "failed"}) if failed else (200, {"status": "ok"})
                self._send(code, json.dumps(body).encode(), "application/json")
            elif self.path == "/ready":
                code = 200 if health.ready else 503
                body = {"status": "ready" if health.ready else "starting"}
                self._send(code, json.dumps(body).encode(), "application/json")
            elif self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b'{"error": "not_found"}', "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the logs

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="veil-health", daemon=True).start()
    return server


def _client_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg["KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": cfg["KAFKA_SECURITY_PROTOCOL"],
        "client.id": f"veil-wrapper-{socket.gethostname()}",
        "logger": logging.getLogger("veil.wrapper.kafka"),
    }
    for env, key in (("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
                     ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
                     ("KAFKA_SASL_USERNAME", "sasl.username"),
                     ("KAFKA_SASL_PASSWORD", "sasl.password")):
        if cfg[env]:
            conf[key] = cfg[env]
    return conf


class Runner:
    """The consume → predict → produce loop and its offset bookkeeping.

    Delivery is tracked without a Python callback per message (that alone would cost a third of
    the throughput): the producer reports only failures, and when its queue is empty
    (`len(producer) == 0`) every result produced so far has been acknowledged, so the offsets of
    every batch handled before are safe to commit. With KAFKA_MAX_IN_FLIGHT_BATCHES handled but
    unacknowledged batches, the loop flushes the producer to get there.
    """

    def __init__(self, cfg: Mapping[str, Any], model: Model, metrics: _Metrics) -> None:
        self.cfg = cfg
        self.model = model
        self.metrics = metrics
        self.stop = threading.Event()
        self.unacked: dict[tuple[str, int], int] = {}  # handled, results not yet acknowledged
        self.unacked_batches = 0
        self.committable: dict[tuple[str, int], int] = {}  # acknowledged, not yet committed
        self.failure: str | None = None
        self.last_commit = 0.0
        base = _client_config(cfg)
        self.consumer = Consumer({
            **base,
            "group.id": cfg["KAFKA_GROUP_ID"],
            "enable.auto.commit": False,
            "auto.offset.reset": cfg["KAFKA_AUTO_OFFSET_RESET"],
            "session.timeout.ms": cfg["KAFKA_SESSION_TIMEOUT_MS"],
            "heartbeat.interval.ms": cfg["KAFKA_HEARTBEAT_INTERVAL_MS"],
        })
        self.producer = Producer({
            **base, "acks": "all", "linger.ms": 2,
            "message.max.bytes": cfg["KAFKA_MESSAGE_MAX_BYTES"],
            "message.timeout.ms": cfg["KAFKA_MESSAGE_TIMEOUT_MS"],
            "allow.auto.create.topics": cfg["KAFKA_ALLOW_AUTO_CREATE_TOPICS"],
            "delivery.report.only.error": True, "on_delivery": self._delivery_failed,
        })
        self.output = str(cfg["KAFKA_OUTPUT_TOPIC"])
        self.dlq_topic = str(cfg["KAFKA_DLQ_TOPIC"])

    def _delivery_failed(self, err: Any, msg: Any) -> None:
        if err is not None and self.failure is None:
            self.failure = f"{err.str()} ({err.name()}, topic {msg.topic()})"

    def _refused(self, err: KafkaException, topic: str) -> DeliveryFailed:
        """A produce call the producer refused for good: nothing after the last safe point may
        be committed, so the failure is recorded before the loop unwinds."""
        kerr = err.args[0] if err.args and isinstance(err.args[0], KafkaError) else None
        what = f"{kerr.str()} ({kerr.name()})" if kerr is not None else str(err)
        if self.failure is None:
            self.failure = f"{what}, topic {topic}"
        return DeliveryFailed(self.failure)

    # -- offsets ----------------------------------------------------------------------------
    def settle(self, *, wait: bool = False) -> None:
        """Move what the broker acknowledged to the committable set, and commit it."""
        if self.failure is not None:
            # Nothing handled since the last safe point is committed: it is read again later.
            raise DeliveryFailed(self.failure)
        if self.unacked and len(self.producer) == 0:
            self.committable.update(self.unacked)
            self.unacked = {}
            self.unacked_batches = 0
        self.metrics.in_flight.set(self.unacked_batches)
        now = time.monotonic()
        # Each commit is a request the broker must serve: under load, at most one per interval.
        if self.committable and (wait or now - self.last_commit >= COMMIT_INTERVAL):
            self.last_commit = now
            done, self.committable = self.committable, {}
            offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(done.items())]
            try:
                if wait:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                else:
                    self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as err:
                # A commit lost to a rebalance only means re-delivery: at-least-once holds.
                log.warning("offset commit failed", extra={"error": str(err)})

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for every result to be acknowledged, then commit synchronously."""
        left = self.producer.flush(timeout)
        if left:
            raise DeliveryFailed(f"{left} results not acknowledged within {timeout:.0f} s")
        self.settle(wait=True)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Results of revoked partitions must be delivered and committed before another member
        # takes them over, or it would redo work we already did (allowed, but avoidable).
        if self.failure is not None:
            return  # already stopping: nothing may be committed, and it was logged once
        try:
            self.drain()
        except DeliveryFailed as err:
            log.error("delivery failed during rebalance", extra={"error": str(err)})
            self.stop.set()

    # -- messages ---------------------------------------------------------------------------
    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 headers: list[Any] | None) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    def _dead_letter(self, msg: Message, cause: str, error: str) -> None:
        headers: list[Any] = list(msg.headers() or [])
        headers += [
            ("veil.error.type", cause.encode()),
            ("veil.error.message", error[:1000].encode("utf-8", "replace")),
            ("veil.source.topic", (msg.topic() or "").encode()),
            ("veil.source.partition", str(msg.partition()).encode()),
            ("veil.source.offset", str(msg.offset()).encode()),
        ]
        self.metrics.errors.labels(cause).inc()
        try:
            self._produce(self.dlq_topic, msg.value(), msg.key(), headers)
        except KafkaException as err:
            raise self._refused(err, self.dlq_topic) from None

    def _produce_result(self, msg: Message, value: bytes) -> bool:
        """The slow path of producing a result: after a full queue or a refusal. False when the
        result became a dead letter."""
        try:
            self._produce(self.output, value, msg.key(), None)
            return True
        except KafkaException as err:
            kerr = err.args[0] if err.args and isinstance(err.args[0], KafkaError) else None
            if kerr is None or kerr.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise self._refused(err, self.output) from None
        limit = self.cfg["KAFKA_MESSAGE_MAX_BYTES"]
        self._dead_letter(msg, "result_too_large",
                          f"result of {len(value)} bytes exceeds KAFKA_MESSAGE_MAX_BYTES={limit}")
        return False

    def handle(self, msgs: list[Message]) -> None:
        predict = self.model.predict
        loads, dumps = json.loads, json.dumps
        output, produce = self.output, self.producer.produce
        ok = dead = 0
        started = time.perf_counter()
        for msg in msgs:
            if msg.error() is not None:
                log.warning("consumer error", extra={"error": str(msg.error())})
                continue
            try:
                payload = loads(msg.value())  # type: ignore[arg-type]
                if not isinstance(payload, dict):
                    raise ValueError("payload must be a JSON object")
            except (ValueError, TypeError) as err:
                self._dead_letter(msg, "bad_json", str(err))
                dead += 1
                continue
            try:
                result = predict(payload)
            except Exception as err:
                log.error("predict raised", exc_info=True, extra={
                    "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()})
                self._dead_letter(msg, "exception", f"{type(err).__name__}: {err}")
                dead += 1
                continue
            try:
                value = dumps(result).encode()
            except (TypeError, ValueError) as err:
                self._dead_letter(msg, "bad_result", str(err))
                dead += 1
                continue
            try:
                produce(output, value, msg.key())
            except (BufferError, KafkaException):
                if not self._produce_result(msg, value):
                    dead += 1
                    continue
            ok += 1
        # Offsets only after every message of the batch was handed to the producer; a batch's
        # messages of one partition come in order, so the last one per partition is enough.
        self.unacked.update({(m.topic(), m.partition()): m.offset() + 1  # type: ignore[misc,operator]
                             for m in msgs if m.error() is None})
        self.unacked_batches += 1
        self.metrics.batch.observe(time.perf_counter() - started)
        self.metrics.ok.inc(ok)
        if dead:
            self.metrics.dlq.inc(dead)

    def loop(self, health: _Health) -> None:
        self.consumer.subscribe([str(self.cfg["KAFKA_INPUT_TOPIC"])], on_revoke=self._on_revoke)
        size = int(self.cfg["KAFKA_BATCH_SIZE"])
        max_in_flight = int(self.cfg["KAFKA_MAX_IN_FLIGHT_BATCHES"])
        health.ready = True
        while not self.stop.is_set():
            msgs = self.consumer.consume(size, 0.2)
            if msgs:
                self.handle(msgs)
            self.producer.poll(0)
            if self.unacked_batches >= max_in_flight:
                self.producer.flush(30)  # back-pressure, and a point where all is acknowledged
            self.settle()


def run(environ: Mapping[str, str] | None = None) -> int:
    cfg = read_config(KAFKA_ENV, environ)
    setup_logging(str(cfg["LOG_LEVEL"]))
    metrics = _Metrics()
    health = _Health()
    server = _serve_health(int(cfg["HEALTH_PORT"]), health, metrics) if cfg["HEALTH_PORT"] else None
    model = Model(str(cfg["VEIL_ENTRYPOINT"]))
    try:
        model.load()
    except Exception:
        health.failed = "load() failed"
        log.error("load() failed", exc_info=True, extra={"entrypoint": model.spec})
        return 1
    runner = Runner(cfg, model, metrics)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        runner.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("consuming", extra={"entrypoint": model.spec, "topic": cfg["KAFKA_INPUT_TOPIC"],
                                 "group": cfg["KAFKA_GROUP_ID"]})
    code = 0
    try:
        runner.loop(health)
        runner.drain()
    except DeliveryFailed as err:
        health.failed = str(err)
        log.error("a result could not be delivered; stopping without committing it",
                  extra={"error": str(err)})
        code = 1
    finally:
        health.ready = False
        runner.consumer.close()
        if server is not None:
            server.shutdown()
    log.info("stopped", extra={"exit_code": code})
    return code
