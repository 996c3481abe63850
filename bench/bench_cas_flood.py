#!/usr/bin/env python3
"""Benchmark: legitimate attestations while anonymous clients flood CAS with writes.

The flood (wrk, 50 connections) alternates nonce requests for config ids that name nothing and
client registrations — the two requests that need no identity and used to write an audit row
(and a client row) each. The legitimate load (wrk, 8 kept-alive connections) attests against a
real session. Baseline: the same legitimate load alone, against the same server, alternating
with the flooded phase `--runs` times (the machine's other load changes over a run; alternating
pairs compare like with like). The flood starts `--lead` seconds before the legitimate load is
measured: what is measured is a flood in progress, past its first second (every source's
burst allowance, 30 registrations and 20 lookups per worker, is spent in it). Printed per pair
and as the median: the legitimate load's attestations/s and request latency p50/p99 alone and
under the flood, the p99 ratio, the flood's requests/s answered (404 within the burst, 200
registrations) and refused (429), the audit rows the flood added, and peak worker memory.

    python3 bench/bench_cas_flood.py [--duration 8] [--workers 2] [--runs 5] [--lead 1]

Needs `wrk`. About 20 seconds a run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lead", type=float, default=1.0,
                    help="seconds the flood runs before the legitimate load is measured")
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
    rows: list[list[dict[str, float]]] = []
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
        for _ in range(args.runs):
            pair = []
            for flooded in (False, True):
                before = audit_rows(db)
                fl: dict[str, Any] = {}
                flood_for = int(args.duration + args.lead + 1.999)
                t = threading.Thread(target=flood, args=(port, flood_for, csr, fl))
                if flooded:
                    t.start()
                    time.sleep(args.lead)
                legit = run_wrk(port, 8, args.duration, close=False)
                if flooded:
                    t.join()
                secs = legit["duration_us"] / 1e6
                fsecs = fl.get("duration_us", 1) / 1e6
                pair.append(
                    {
                        "att": legit["ok"] / secs,
                        "p50": legit["p50_us"] / 1000,
                        "p99": legit["p99_us"] / 1000,
                        "served": fl.get("other", 0) / fsecs,
                        "refused": fl.get("limited", 0) / fsecs,
                        "rows": audit_rows(db) - before - legit["ok"] - legit["refused"],
                        "errors": legit["errors"],
                    }
                )
            rows.append(pair)
        peak = peak_rss_mb(cas.pid)
    finally:
        stop(cas)
        log.close()
    print(
        f"\nCAS {args.workers} workers, SQLite, TLS on loopback; legitimate load: wrk 8 "
        f"kept-alive connections, nonce + provision; flood: wrk 50 connections, nonce "
        f"requests for unknown config ids + client registrations, all from the same address"
    )
    print(
        "| run | alone p50 ms | alone p99 ms | flood p50 ms | flood p99 ms | p99 ratio | "
        "att/s alone / flood | flood served/s | flood refused/s | audit rows from flood | "
        "errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def line(name: str, a: dict[str, float], f: dict[str, float]) -> str:
        return (
            f"| {name} | {a['p50']:.1f} | {a['p99']:.1f} | {f['p50']:.1f} | {f['p99']:.1f} | "
            f"{f['p99'] / a['p99']:.2f} | {a['att']:.0f} / {f['att']:.0f} | "
            f"{f['served']:.0f} | {f['refused']:.0f} | {f['rows']:.0f} | "
            f"{a['errors'] + f['errors']:.0f} |"
        )

    for i, (a, f) in enumerate(rows, 1):
        print(line(str(i), a, f))
    med = [
        {k: statistics.median(r[j][k] for r in rows) for k in rows[0][0]} for j in (0, 1)
    ]
    print(line("median", med[0], med[1]))
    ratios = [f["p99"] / a["p99"] for a, f in rows]
    print(
        f"median of the per-run p99 ratios: {statistics.median(ratios):.2f}; "
        f"peak worker RSS {peak:.0f} MB"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
