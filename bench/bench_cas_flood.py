#!/usr/bin/env python3
"""Benchmark: legitimate attestations while anonymous clients flood CAS with writes.

The flood (wrk, 50 connections) alternates nonce requests for config ids that name nothing and
client registrations — the two requests that need no identity and used to write an audit row
(and a client row) each. The legitimate load (wrk, 8 kept-alive connections) attests against a
real session. Baseline: the same legitimate load alone, in the same run. Printed: attestations/s
and request latency p50/p99 of the legitimate load, the flood's request rate and share of 429,
the audit rows the flood added, and peak worker memory.

    python3 bench/bench_cas_flood.py [--duration 8] [--workers 2]

Needs `wrk`. About 40 seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_cas import CID, MEAS, free_port, peak_rss_mb, run_wrk, stop, wait_ready  # noqa: E402


def audit_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])


def flood(port: int, duration: int, csr: str, out: dict[str, Any]) -> None:
    env = {**os.environ, "CSR_JSON": json.dumps({"csr": csr})}
    cmd = ["wrk", "-t", "1", "-c", "50", "-d", f"{duration}s", "--timeout", "10s"]
    cmd += ["-s", str(HERE / "cas_flood.lua"), f"https://127.0.0.1:{port}"]
    text = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    m = re.search(r"^RESULT (.*)$", text, re.M)
    out.update(json.loads(m.group(1)) if m else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    from veil.cas import pki
    from veil.cas.client import CasClient
    from veil.cas.state import init_state

    tmp = Path(tempfile.mkdtemp(prefix="veil-bench-flood-"))
    files = init_state(tmp / "state", ["127.0.0.1"])
    db = files.root / "cas.db"
    port = free_port()
    env = {**os.environ, "VEIL_CONFIG_DIR": str(tmp / "cfg"), "VEIL_HOME": str(tmp / "home")}
    env.pop("VEIL_CAS_RATE_SCALE", None)  # the limits as shipped
    log = (tmp / "cas.log").open("wb")
    cmd = [sys.executable, "-m", "veil", "cas", "serve", "--state-dir", str(files.root)]
    cmd += ["--listen", f"127.0.0.1:{port}", "--workers", str(args.workers)]
    cas = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    rows = []
    try:
        wait_ready(port, cas)
        with CasClient(f"127.0.0.1:{port}", files.public_key_b64(), identity_dir=tmp / "id") as c:
            c.create_session(
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
                            "environment": {"PW": "$$SCONE::pw$$"},
                        }
                    ],
                    "secrets": [{"name": "pw", "kind": "ascii", "size": 16}],
                },
            )
        assert CID == "bench/hello/app"
        csr = pki.make_csr(pki.new_ec_key()).decode()
        run_wrk(port, 8, 2, close=False)  # warm up
        for phase in ("alone", "under flood"):
            before = audit_rows(db)
            fl: dict[str, Any] = {}
            t = threading.Thread(target=flood, args=(port, args.duration + 2, csr, fl))
            if phase == "under flood":
                t.start()
            legit = run_wrk(port, 8, args.duration, close=False)
            if t.is_alive() or phase == "under flood":
                t.join()
            secs = legit["duration_us"] / 1e6
            flood_rps = fl.get("requests", 0) / (fl.get("duration_us", 1) / 1e6) if fl else 0
            share = fl.get("limited", 0) / max(1, fl.get("requests", 0)) if fl else 0
            added = audit_rows(db) - before - legit["ok"] - legit["refused"]
            rows.append(
                (
                    phase,
                    legit["ok"] / secs,
                    legit["p50_us"] / 1000,
                    legit["p99_us"] / 1000,
                    flood_rps,
                    share,
                    added,
                    legit["errors"],
                )
            )
        peak = peak_rss_mb(cas.pid)
    finally:
        stop(cas)
        log.close()
    print(
        f"\nCAS {args.workers} workers, SQLite, TLS on loopback; legitimate load: wrk 8 "
        f"kept-alive connections, nonce + provision; flood: wrk 50 connections"
    )
    print(
        "| phase | att/s | req p50 ms | req p99 ms | flood req/s | flood 429 | "
        "audit rows from flood | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]:.0f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.0f} | {r[5]:.0%} | "
            f"{r[6]} | {r[7]} |"
        )
    print(
        f"p99 ratio under flood / alone: {rows[1][3] / rows[0][3]:.2f}; "
        f"peak worker RSS {peak:.0f} MB"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
