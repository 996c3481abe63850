"""The Flask wrapper for real: the wrapped context served by gunicorn (2 workers) on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from veil.wrap import prepare_context

pytestmark = pytest.mark.integration

MODEL = '''
class Scorer:
    """Scores payloads."""

    def load(self):
        self.factor = 3

    def predict(self, payload):
        if payload.get("boom"):
            raise RuntimeError("secret-internal-detail")
        if payload.get("set"):
            return {"not": {1, 2}}
        if payload.get("nan"):
            return {"score": float(payload["nan"])}
        if payload.get("exit"):
            raise SystemExit(3)
        return {"y": payload["x"] * self.factor}
'''


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("flask")
    (tmp / "repo").mkdir()
    (tmp / "repo" / "model.py").write_text(MODEL)
    ctx = prepare_context(tmp / "repo", "flask", "model:Scorer", tmp / "ctx").dest_dir
    port = free_port()
    log = tmp / "gunicorn.log"
    env = dict(os.environ, VEIL_ENTRYPOINT="model:Scorer", HTTP_HOST="127.0.0.1",
               HTTP_PORT=str(port), WEB_CONCURRENCY="2", MAX_REQUEST_BYTES="1000")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "veil_runner", "flask"], cwd=ctx, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Server(url, log)
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # gunicorn's master: it stops its workers
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        assert code == 0, "SIGTERM stops the wrapper cleanly"


def log_lines(server: Server) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in server.log.read_text().splitlines() if ln.startswith("{")]


def test_predict_and_request_id(server: Server) -> None:
    r = httpx.post(server.url + "/predict", json={"x": 7}, headers={"X-Request-Id": "abc-1"})
    assert (r.status_code, r.json()) == (200, {"y": 21})
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "abc-1"
    generated = httpx.post(server.url + "/predict", json={"x": 1}).headers["x-request-id"]
    assert len(generated) == 32
    time.sleep(0.2)
    access = [ln for ln in log_lines(server) if ln.get("logger") == "veil.wrapper.access"]
    assert any(ln["request_id"] == "abc-1" and ln["status"] == 200 for ln in access)


def test_every_log_line_is_json(server: Server) -> None:
    lines = [ln for ln in server.log.read_text().splitlines() if ln.strip()]
    assert lines and all(ln.startswith("{") for ln in lines), lines[:5]
    parsed = log_lines(server)
    assert {"gunicorn.error", "veil.wrapper"} <= {str(ln["logger"]) for ln in parsed}
    assert all({"ts", "level", "logger", "msg"} <= ln.keys() for ln in parsed)


@pytest.mark.parametrize(
    ("body", "status", "error", "message"),
    [
        (b'{"x": ', 400, "bad_request", "not valid JSON"),
        (b"[1, 2]", 400, "bad_request", "must be a JSON object"),
        (b'{"boom": true}', 500, "internal_error", "the model raised an exception"),
        (b'{"set": true}', 500, "internal_error", "not JSON"),
        (b'{"nan": "nan"}', 500, "internal_error", "not JSON"),
        (b'{"nan": "inf"}', 500, "internal_error", "not JSON"),
        (b'{"nan": "-inf"}', 500, "internal_error", "not JSON"),
        (b'{"exit": true}', 500, "internal_error", "the model raised an exception"),
        (b'{"pad": "' + b"a" * 2000 + b'"}', 413, "request_entity_too_large", "larger than 1000"),
    ],
)
def test_errors_are_json_with_status(
    server: Server, body: bytes, status: int, error: str, message: str
) -> None:
    r = httpx.post(server.url + "/predict", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == status
    doc = r.json()
    assert doc["error"] == error and message in doc["message"]
    assert doc["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text and "secret-internal-detail" not in r.text


def test_customer_exception_is_logged_in_full(server: Server) -> None:
    r = httpx.post(server.url + "/predict", json={"boom": True})
    rid = r.headers["x-request-id"]
    time.sleep(0.2)
    (entry,) = [ln for ln in log_lines(server) if ln.get("request_id") == rid
                and ln["msg"] == "predict raised"]
    assert entry["level"] == "ERROR"
    assert "secret-internal-detail" in str(entry["traceback"])
    assert 'model.py", line' in str(entry["traceback"])


def test_probes_openapi_and_unknown_paths(server: Server) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/ready").json() == {"status": "ready"}
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and spec["info"]["title"] == "model:Scorer"
    assert spec["info"]["description"] == "Scores payloads."
    assert set(spec["paths"]) == {"/predict", "/health", "/ready", "/metrics"}
    r = httpx.get(server.url + "/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert httpx.get(server.url + "/predict").status_code == 405


def _metric(text: str, line_start: str) -> float:
    for ln in text.splitlines():
        if ln.startswith(line_start + " "):
            return float(ln.split()[-1])
    return 0.0


def test_metrics_add_up_across_workers(server: Server) -> None:
    before = httpx.get(server.url + "/metrics").text
    with httpx.Client() as client:
        for i in range(40):  # new connections, so both workers answer some
            assert client.post(server.url + "/predict", json={"x": i},
                               headers={"connection": "close"}).status_code == 200
        client.post(server.url + "/predict", content=b"nope")
    after = httpx.get(server.url + "/metrics").text
    ok = 'veil_predict_duration_seconds_count{status="200"}'
    assert _metric(after, ok) - _metric(before, ok) == 40
    bad = 'veil_predict_duration_seconds_count{status="400"}'
    assert _metric(after, bad) - _metric(before, bad) == 1
    cause = 'veil_predict_errors_total{cause="bad_json"}'
    assert _metric(after, cause) - _metric(before, cause) == 1
    fast = 'veil_predict_duration_seconds_bucket{le="10.0",status="200"}'
    assert _metric(after, fast) - _metric(before, fast) == 40
    time.sleep(0.2)
    access = [ln for ln in log_lines(server) if ln.get("logger") == "veil.wrapper.access"]
    workers = {ln["worker"] for ln in access}
    assert len(workers) == 2, "both workers answered, so the sum above spans both"


def test_chunked_body_over_the_limit_is_refused(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(30):
            yield b"a" * 100
        yield b'"}'

    r = httpx.post(server.url + "/predict", content=chunks())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413 and r.json()["error"] == "request_entity_too_large"
    small = httpx.post(server.url + "/predict", content=iter([b'{"x"', b": 2}"]))
    assert (small.status_code, small.json()) == (200, {"y": 6})


def test_slow_clients_do_not_hold_up_normal_requests(server: Server) -> None:
    """50 clients that send their headers or their body a byte at a time (slowloris) while
    normal requests come in: every normal request is answered promptly."""
    host, port = server.url.removeprefix("http://").split(":")
    stop = threading.Event()
    socks: list[socket.socket] = []

    def slow(i: int) -> None:
        s = socket.create_connection((host, int(port)), timeout=30)
        socks.append(s)
        if i % 2:  # headers a byte at a time
            data = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        else:  # complete headers, then the body a byte at a time
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 900\r\n\r\n")
            data = b'{"x": 1, "pad": "' + b"a" * 800
        for b in data:
            if stop.wait(0.1):
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return

    threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(50)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # every slow client connected and trickling
        times = []
        with httpx.Client(timeout=10) as client:
            for i in range(20):
                started = time.monotonic()
                r = client.post(server.url + "/predict", json={"x": i})
                times.append(time.monotonic() - started)
                assert r.status_code == 200 and r.json() == {"y": 3 * i}
                client.headers["Connection"] = "close" if i % 2 else "keep-alive"
        assert max(times) < 2.0, times
    finally:
        stop.set()
        for s in socks:
            s.close()
