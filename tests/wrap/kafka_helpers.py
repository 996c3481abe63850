"""Helpers of the Kafka wrapper tests: a wrapped context, a producer, a counting reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import free_port
from veil.wrap import prepare_context

MODEL = '''
import os, time

DELAY = float(os.environ.get("TEST_DELAY", "0"))


def predict(payload):
    if payload.get("fail"):
        raise ValueError("asked to fail")
    if DELAY:
        time.sleep(DELAY)
    if payload.get("big"):
        return {"y": "x" * payload["big"]}
    return {"y": payload["x"] * 2}
'''


def wrapped_kafka_context(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "model.py").write_text(MODEL)
    return prepare_context(repo, "kafka", "model:predict", tmp / "ctx").dest_dir


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in items:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(30) == 0


def start_wrapper(ctx: Path, bootstrap: str, topics: dict[str, str], log: Path,
                  **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    health = free_port()
    env = dict(
        os.environ,
        VEIL_ENTRYPOINT="model:predict",
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        KAFKA_INPUT_TOPIC=topics["in"],
        KAFKA_OUTPUT_TOPIC=topics["out"],
        KAFKA_DLQ_TOPIC=topics["dlq"],
        KAFKA_GROUP_ID=topics["group"],
        KAFKA_SESSION_TIMEOUT_MS="6000",
        KAFKA_HEARTBEAT_INTERVAL_MS="500",
        HEALTH_PORT=str(health),
        **extra,
    )
    env.pop("PYTHONPATH", None)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "veil_runner", "kafka"], cwd=ctx, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, health


class Reader:
    """Reads the output and dead-letter topics in the background and counts what arrives.

    Tansu's high watermark is not reliable, so the reader never stops on it: it counts messages.
    """

    def __init__(self, bootstrap: str, *topic_names: str) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
        })
        self._consumer.subscribe(list(topic_names))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(500, 0.2):
                if m.error():
                    continue
                rec = {"topic": m.topic(), "key": m.key(), "value": m.value(),
                       "headers": dict(m.headers() or [])}
                with self._lock:
                    self.records.append(rec)
        self._consumer.close()

    def count(self, topic: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.records if topic is None or r["topic"] == topic)

    def keys(self) -> set[bytes]:
        with self._lock:
            return {r["key"] for r in self.records}

    def wait_for(self, n: int, timeout: float, topic: str | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.count(topic) < n:
            time.sleep(0.1)
        return self.count(topic)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def committed(bootstrap: str, group: str, topic: str, partitions: int = 2) -> list[int]:
    """The group's committed offset per partition of `topic` (negative: nothing committed)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def good(i: int) -> tuple[bytes, bytes]:
    return str(i).encode(), json.dumps({"x": i}).encode()
