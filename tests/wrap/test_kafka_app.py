"""The Kafka wrapper for real: Tansu on loopback, the wrapped consumer as a subprocess, and every
message counted in the output or dead-letter topic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.wrap.conftest import create_topics
from tests.wrap.kafka_helpers import (
    Reader,
    committed,
    good,
    produce,
    start_wrapper,
    wrapped_kafka_context,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if _get(port, "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("wrapper not ready: " + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def test_results_dead_letters_metrics_and_clean_sigterm(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    ctx = wrapped_kafka_context(tmp_path)
    items = [good(i) for i in range(200)]
    items += [(f"fail-{i}".encode(), json.dumps({"x": i, "fail": True}).encode()) for i in range(5)]
    items += [(f"bad-{i}".encode(), b"{not json") for i in range(5)]
    produce(kafka_bootstrap, topics["in"], items)
    reader = Reader(kafka_bootstrap, topics["out"], topics["dlq"])
    log = tmp_path / "wrapper.log"
    proc, health = start_wrapper(ctx, kafka_bootstrap, topics, log)
    try:
        _wait_ready(health, proc, log)
        assert reader.wait_for(210, 60) == 210, log.read_text()[-3000:]
        out = [r for r in reader.records if r["topic"] == topics["out"]]
        dlq = [r for r in reader.records if r["topic"] == topics["dlq"]]
        assert len(out) == 200 and len(dlq) == 10
        for r in out:  # keyed as the input, the customer's result as the value
            assert json.loads(r["value"]) == {"y": 2 * int(r["key"])}
        causes = {r["key"].decode(): r["headers"] for r in dlq}
        assert causes["fail-3"]["veil.error.type"] == b"exception"
        assert b"asked to fail" in causes["fail-3"]["veil.error.message"]
        assert causes["bad-1"]["veil.error.type"] == b"bad_json"
        assert causes["bad-1"]["veil.source.topic"] == topics["in"].encode()
        assert int(causes["bad-1"]["veil.source.offset"]) >= 0
        assert next(r for r in dlq if r["key"] == b"bad-2")["value"] == b"{not json"

        assert _get(health, "/health") == (200, '{"status": "ok"}')
        status, metrics = _get(health, "/metrics")
        assert status == 200
        assert 'veil_kafka_messages_total{outcome="ok"} 200.0' in metrics
        assert 'veil_kafka_errors_total{cause="bad_json"} 5.0' in metrics

        assert _stop(proc) == 0
        lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]
        assert any(ln["msg"] == "stopped" and ln["exit_code"] == 0 for ln in lines)
        assert any(ln["msg"] == "predict raised" and "asked to fail" in ln["traceback"]
                   for ln in lines)

        # SIGTERM committed everything: a new member of the group redoes nothing.
        produce(kafka_bootstrap, topics["in"], [good(i) for i in range(1000, 1020)])
        proc, health = start_wrapper(ctx, kafka_bootstrap, topics, log)
        assert reader.wait_for(230, 60) == 230, log.read_text()[-3000:]
        time.sleep(2)
        assert reader.count() == 230
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            _stop(proc)
        reader.close()


def test_kill_9_mid_stream_loses_nothing(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    ctx = wrapped_kafka_context(tmp_path)
    n = 3000
    produce(kafka_bootstrap, topics["in"], [good(i) for i in range(n)])
    reader = Reader(kafka_bootstrap, topics["out"], topics["dlq"])
    log = tmp_path / "wrapper.log"
    # Slow enough that the kill lands in the middle; small batches so some are committed.
    slow = {"TEST_DELAY": "0.001", "KAFKA_BATCH_SIZE": "50"}
    proc, _ = start_wrapper(ctx, kafka_bootstrap, topics, log, **slow)
    try:
        assert reader.wait_for(600, 60) >= 600, log.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill = reader.count()
        assert at_kill < n, "the kill did not land mid-stream"
        proc, _ = start_wrapper(ctx, kafka_bootstrap, topics, log, **slow)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(reader.keys()) < n:
            time.sleep(0.2)
        expected = {str(i).encode() for i in range(n)}
        assert reader.keys() == expected, f"missing {len(expected - reader.keys())} of {n}"
        assert reader.count(topics["dlq"]) == 0
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            _stop(proc)
        reader.close()


def test_a_member_joining_mid_stream_takes_over_without_redoing_work(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    ctx = wrapped_kafka_context(tmp_path)
    n = 2000
    produce(kafka_bootstrap, topics["in"], [good(i) for i in range(n)])
    reader = Reader(kafka_bootstrap, topics["out"], topics["dlq"])
    log = tmp_path / "wrapper.log"
    slow = {"TEST_DELAY": "0.002", "KAFKA_BATCH_SIZE": "50"}
    first, _ = start_wrapper(ctx, kafka_bootstrap, topics, log, **slow)
    second = None
    try:
        assert reader.wait_for(300, 60) >= 300, log.read_text()[-3000:]
        second, second_health = start_wrapper(ctx, kafka_bootstrap, topics, log, **slow)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(reader.keys()) < n:
            time.sleep(0.2)
        assert reader.keys() == {str(i).encode() for i in range(n)}
        time.sleep(1)
        # The first member delivered and committed before giving its partitions up.
        assert reader.count() == n
        # ... and the second really took partitions over: it handled messages too.
        status, metrics = _get(second_health, "/metrics")
        handled = [ln for ln in metrics.splitlines()
                   if ln.startswith('veil_kafka_messages_total{outcome="ok"}')]
        assert status == 200 and float(handled[0].split()[-1]) > 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                assert _stop(proc) == 0
        reader.close()


def _log_lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]


def test_a_result_too_large_is_a_dead_letter_and_the_stream_goes_on(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    ctx = wrapped_kafka_context(tmp_path)
    big = json.dumps({"x": 0, "big": 50_000}).encode()  # its result: about 50 kB
    items = [good(i) for i in range(50)] + [(b"big", big)] + [good(i) for i in range(50, 100)]
    produce(kafka_bootstrap, topics["in"], items)
    reader = Reader(kafka_bootstrap, topics["out"], topics["dlq"])
    log = tmp_path / "wrapper.log"
    proc, health = start_wrapper(ctx, kafka_bootstrap, topics, log,
                                 KAFKA_MESSAGE_MAX_BYTES="10000")
    try:
        _wait_ready(health, proc, log)
        assert reader.wait_for(101, 60) == 101, log.read_text()[-3000:]
        dlq = [r for r in reader.records if r["topic"] == topics["dlq"]]
        assert [r["key"] for r in dlq] == [b"big"]
        assert dlq[0]["value"] == big  # the input, unchanged: it can be replayed
        assert dlq[0]["headers"]["veil.error.type"] == b"result_too_large"
        assert dlq[0]["headers"]["veil.error.message"] == (
            b"result of 50009 bytes exceeds KAFKA_MESSAGE_MAX_BYTES=10000")
        out = {r["key"] for r in reader.records if r["topic"] == topics["out"]}
        assert out == {str(i).encode() for i in range(100)}
        _, metrics = _get(health, "/metrics")
        assert 'veil_kafka_errors_total{cause="result_too_large"} 1.0' in metrics
        assert 'veil_kafka_messages_total{outcome="ok"} 100.0' in metrics
        assert _get(health, "/health") == (200, '{"status": "ok"}')
        assert _stop(proc) == 0
        # The dead-lettered message counts as handled: its offset is committed with the rest.
        assert sum(committed(kafka_bootstrap, topics["group"], topics["in"])) == 101
    finally:
        if proc.poll() is None:
            _stop(proc)
        reader.close()


def test_a_result_that_cannot_be_delivered_stops_the_runner_without_committing(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    ctx = wrapped_kafka_context(tmp_path)
    n = 100
    produce(kafka_bootstrap, topics["in"], [good(i) for i in range(n)])
    # An output topic that does not exist and may not be created: no result is ever
    # acknowledged, and after KAFKA_MESSAGE_TIMEOUT_MS the producer gives each one up.
    missing = dict(topics, out=f"missing-{topics['out']}")
    log = tmp_path / "wrapper.log"
    proc, _ = start_wrapper(ctx, kafka_bootstrap, missing, log,
                            KAFKA_ALLOW_AUTO_CREATE_TOPICS="false",
                            KAFKA_MESSAGE_TIMEOUT_MS="2000")
    try:
        assert proc.wait(60) == 1, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise AssertionError("the runner kept going: " + log.read_text()[-3000:]) from None
    lines = _log_lines(log)
    failed = [ln for ln in lines
              if ln["msg"] == "a result could not be delivered; stopping without committing it"]
    assert len(failed) == 1, lines
    assert failed[0]["level"] == "ERROR"
    assert failed[0]["error"] == (
        f"Local: Message timed out (_MSG_TIMED_OUT, topic {missing['out']})")
    assert any(ln["msg"] == "stopped" and ln["exit_code"] == 1 for ln in lines)
    assert all(offset < 0 for offset in committed(kafka_bootstrap, topics["group"], topics["in"]))

    # At-least-once: once the topic exists, a restarted member of the group does them all.
    create_topics(kafka_bootstrap, missing["out"])
    reader = Reader(kafka_bootstrap, missing["out"])
    proc, _ = start_wrapper(ctx, kafka_bootstrap, missing, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(reader.keys()) < n:
            time.sleep(0.2)
        assert reader.keys() == {str(i).encode() for i in range(n)}, log.read_text()[-3000:]
        assert _stop(proc) == 0
        assert sum(committed(kafka_bootstrap, topics["group"], topics["in"])) == n
    finally:
        if proc.poll() is None:
            _stop(proc)
        reader.close()
