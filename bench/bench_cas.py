#!/usr/bin/env python3
"""Benchmark: CAS attestation + provisioning round trips over TLS on loopback.

For each of CAS and a bare FastAPI baseline (same uvicorn, TLS and worker setup; endpoints that
answer the same requests with constant JSON), with kept-alive connections and with a new TLS
connection per request (what starting containers do), at concurrency 1, 8 and 32: wrk drives
nonce + provision pairs (cas_attest.lua) and we print attestations/s, request latency p50/p99,
the ratio to the baseline in the same run, peak worker memory, and whether the audit log holds
one `provision` entry per successful attestation.

    python3 bench/bench_cas.py [--duration 8] [--workers 2] [--concurrency 1,8,32]

Needs `wrk`. Takes about 2 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

HERE = Path(__file__).resolve().parent
MEAS = "ab" * 32
CID = "bench/hello/app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the baseline server ----------------------------------------------------------------------
def bare_app() -> Any:
    """Same requests, constant answers: what FastAPI + uvicorn + TLS cost on their own."""
    import base64
    import gc

    app = FastAPI()
    # the same collector settings as CAS's workers (veil.cas.app.app_from_env)
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)

    @app.post("/v1/attestation/nonce")
    async def nonce(request: Request) -> dict[str, Any]:
        await request.json()
        return {"nonce": base64.b64encode(os.urandom(32)).decode(), "expires_in": 60}

    @app.post("/v1/attestation/provision")
    async def provision(request: Request) -> dict[str, Any]:
        await request.json()
        return {"env": {"API_USER": "x"}, "argv": ["python3"], "pwd": "/", "files": []}

    return app


def serve_bare(state: Path, port: int, workers: int) -> None:
    import uvicorn

    from veil.cas.server import PeerCertProtocol

    uvicorn.run(
        "bench_cas:bare_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        ssl_keyfile=str(state / "cas-key.pem"),
        ssl_certfile=str(state / "cas-cert.pem"),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ca_certs=str(state / "client-ca.pem"),
        http=PeerCertProtocol,
        log_level="warning",
    )


# -- process helpers --------------------------------------------------------------------------
def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited during start")
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s, ctx.wrap_socket(s):
                time.sleep(1.0)  # let every worker come up
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def descendants(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(d.name))
            out += descendants(int(d.name))
    return out


def peak_rss_mb(pid: int) -> float:
    """Largest peak RSS (VmHWM) among the server's worker processes."""
    peak = 0
    for p in [pid, *descendants(pid)]:
        try:
            m = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        if m:
            peak = max(peak, int(m.group(1)))
    return peak / 1024


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def provisions_in_audit(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                'SELECT count(*) FROM audit WHERE entry LIKE \'%"event":"provision"%\''
            ).fetchone()[0]
        )


def run_wrk(port: int, conc: int, duration: int, close: bool) -> dict[str, Any]:
    env = {**os.environ, "CID": CID, "MEAS": MEAS, "CLOSE": "1" if close else "0"}
    threads = 1 if conc == 1 else 2
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(conc),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "cas_attest.lua"),
        f"https://127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        raise SystemExit(f"wrk gave no result:\n{out}")
    return dict(json.loads(m.group(1)))


def sequential_attest_ms(port: int, cert: bytes, n: int = 200) -> tuple[float, float]:
    """Whole attestation (nonce + provision, kept-alive) latency at concurrency 1."""
    import base64

    import httpx

    ctx = ssl.create_default_context(cadata=cert.decode())
    ctx.check_hostname = False
    times = []
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx) as http:
        for _ in range(n):
            t0 = time.perf_counter()
            nonce = http.post("/v1/attestation/nonce", json={"config_id": CID}).json()["nonce"]
            report = base64.b64encode(json.dumps({"measurement": MEAS, "nonce": nonce}).encode())
            r = http.post(
                "/v1/attestation/provision",
                json={
                    "config_id": CID,
                    "measurement": MEAS,
                    "nonce": nonce,
                    "platform": "simulation",
                    "report": report.decode(),
                },
            )
            r.raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


# -- the run ----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--serve-bare", nargs=2, metavar=("STATE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(Path(args.serve_bare[0]), int(args.serve_bare[1]), args.workers)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    sys.path.insert(0, str(HERE.parent / "src"))
    from veil.cas.client import CasClient
    from veil.cas.state import init_state

    tmp = Path(tempfile.mkdtemp(prefix="veil-bench-cas-"))
    files = init_state(tmp / "state", ["127.0.0.1"])
    db = tmp / "state" / "cas.db"
    cas_port, bare_port = free_port(), free_port()
    env = {**os.environ, "VEIL_CONFIG_DIR": str(tmp / "cfg"), "VEIL_HOME": str(tmp / "home")}
    log = (tmp / "cas.log").open("wb")
    cas = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veil",
            "cas",
            "serve",
            "--state-dir",
            str(files.root),
            "--listen",
            f"127.0.0.1:{cas_port}",
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    bare = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--workers",
            str(args.workers),
            "--serve-bare",
            str(files.root),
            str(bare_port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(cas_port, cas)
        wait_ready(bare_port, bare)
        with CasClient(
            f"127.0.0.1:{cas_port}", files.public_key_b64(), identity_dir=tmp / "id"
        ) as client:
            client.create_session(
                "bench",
                {
                    "version": "0.3",
                    "name": "hello",
                    "security": {"attestation": {"mode": "debug"}},
                    "services": [
                        {
                            "name": "app",
                            "image_name": "img",
                            "command": "python3 app.py",
                            "pwd": "/app",
                            "attestation": {"measurement": [MEAS]},
                            "environment": {"API_USER": "me", "PW": "$$SCONE::pw$$"},
                        }
                    ],
                    "secrets": [{"name": "pw", "kind": "ascii", "size": 16}],
                    "images": [
                        {
                            "name": "img",
                            "injection_files": [
                                {"path": "/etc/app.conf", "content": "pw=$$SCONE::pw$$"}
                            ],
                        }
                    ],
                },
            )
        seq50, seq99 = sequential_attest_ms(cas_port, files.cert.read_bytes())
        rows = []
        audit_ok = True
        for close in (False, True):
            for conc in [int(c) for c in args.concurrency.split(",")]:
                base = run_wrk(bare_port, conc, args.duration, close)
                before = provisions_in_audit(db)
                res = run_wrk(cas_port, conc, args.duration, close)
                audited = provisions_in_audit(db) - before
                # wrk may stop with requests in flight that the server still completes
                audit_ok &= res["ok"] <= audited <= res["ok"] + conc
                rate = res["ok"] / (res["duration_us"] / 1e6)
                base_rate = base["ok"] / (base["duration_us"] / 1e6)
                rows.append(
                    (
                        "new conn" if close else "keep-alive",
                        conc,
                        base_rate,
                        rate,
                        rate / base_rate if base_rate else 0.0,
                        res["p50_us"] / 1000,
                        res["p99_us"] / 1000,
                        base["p99_us"] / 1000,
                        res["refused"] + res["errors"],
                        audited,
                    )
                )
        cas_mem, bare_mem = peak_rss_mb(cas.pid), peak_rss_mb(bare.pid)
    finally:
        stop(cas)
        stop(bare)
        log.close()
    print(
        f"CAS attestation benchmark: {args.workers} uvicorn workers, TLS on loopback, "
        f"SQLite, {args.duration}s per cell; an attestation = nonce + provision request"
    )
    print(
        f"{'connections':<11} {'conc':>4} {'bare att/s':>10} {'CAS att/s':>9} {'ratio':>6} "
        f"{'req p50 ms':>10} {'req p99 ms':>10} {'bare p99':>8} {'refused':>7} {'audited':>8}"
    )
    for r in rows:
        print(
            f"{r[0]:<11} {r[1]:>4} {r[2]:>10.0f} {r[3]:>9.0f} {r[4]:>6.2f} {r[5]:>10.2f} "
            f"{r[6]:>10.2f} {r[7]:>8.2f} {r[8]:>7} {r[9]:>8}"
        )
    print(
        f"whole attestation, sequential, kept-alive (python client): "
        f"p50 {seq50:.2f} ms, p99 {seq99:.2f} ms"
    )
    print(
        f"peak worker RSS: CAS {cas_mem:.0f} MB, bare {bare_mem:.0f} MB; "
        f"audit entry for every attestation: {'yes' if audit_ok else 'NO'}"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
