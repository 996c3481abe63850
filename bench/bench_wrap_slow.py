#!/usr/bin/env python3
"""Benchmark: normal requests to the Flask wrapper while 50 clients send slowly (slowloris).

Half of the slow clients send their headers a byte every 100 ms, the other half complete headers
and then the body a byte every 100 ms. Meanwhile 4 normal clients POST /predict in a loop.
Baseline: the same normal load alone, in the same run, against the same server. Contenders:
the wrapper as shipped (gunicorn gthread, `GUNICORN_THREADS=64`) and with `GUNICORN_THREADS=1`
(gunicorn's sync worker, the hand-written app's setup). Prints p50/p99 of the normal requests,
their ratio under the slow clients to alone, and requests that took over 5 s.

    python3 bench/bench_wrap_slow.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_wrap import MODEL, free_port, stop, wait_http

from veil.wrap import prepare_context


def slow_client(port: int, i: int, halt: threading.Event) -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError:
        return
    with s:
        if i % 2:
            data = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        else:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 10000\r\n\r\n")
            data = b'{"x": 1, "pad": "' + b"a" * 9_000
        for b in data:
            if halt.wait(0.1):
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return


def normal_load(url: str, seconds: float) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run() -> None:
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < end:
                t = time.monotonic()
                r = c.post(url, json={"x": 1})
                r.raise_for_status()
                with lock:
                    times.append(time.monotonic() - t)

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return times


def p(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000 if len(xs) > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="veil-bench-slow-"))
    (work / "repo").mkdir()
    (work / "repo" / "model.py").write_text(MODEL)
    prepare_context(work / "repo", "flask", "model:predict", work / "ctx")
    rows = []
    for label, threads in (("gthread, 64 threads (shipped)", "64"), ("sync (threads 1)", "1")):
        port = free_port()
        env = dict(os.environ, VEIL_ENTRYPOINT="model:predict", HTTP_HOST="127.0.0.1",
                   HTTP_PORT=str(port), WEB_CONCURRENCY="2", GUNICORN_THREADS=threads,
                   ACCESS_LOG="false")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen([sys.executable, "-m", "veil_runner", "flask"], cwd=work / "ctx",
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        url = f"http://127.0.0.1:{port}/predict"
        try:
            wait_http(url, proc, 30)
            normal_load(url, 1)  # warm-up
            alone = normal_load(url, args.seconds)
            halt = threading.Event()
            slow = [threading.Thread(target=slow_client, args=(port, i, halt), daemon=True)
                    for i in range(50)]
            for t in slow:
                t.start()
            time.sleep(1)
            try:
                under = normal_load(url, args.seconds)
            except httpx.HTTPError as err:
                under = []
                print(f"{label}: normal requests failed under slow clients: {err}")
            halt.set()
        finally:
            stop(proc)
        rows.append((label, len(alone), p(alone, 50), p(alone, 99), len(under), p(under, 50),
                     p(under, 99), sum(t > 5 for t in under)))
    print("\n| worker | alone: req | p50 ms | p99 ms | 50 slow clients: req | p50 ms | p99 ms "
          "| p99 ratio | > 5 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]} | {r[5]:.1f} | {r[6]:.1f} | "
              f"{r[6] / r[3]:.2f} | {r[7]} |")


if __name__ == "__main__":
    main()
