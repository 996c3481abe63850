#!/usr/bin/env python3
"""What sconectl's layer order costs the build cache: `run:` steps after `copy:` vs before.

sconectl copies the application files first and runs the `run:` steps after them (a step may
move or compile the copied files). Veil puts `run:` steps before the application files, so an
edit of the program reuses every RUN layer. This measures, in one run on the same overlay
storage, the rebuild after a one-file change of the program for both orders, with the seeds'
three `run:` steps (the `echo` lines of the genservice reference):

    baseline  FROM base, RUN x3, COPY app        (Veil: run steps before the application)
    sconectl  FROM base, COPY app, RUN x3        (copy first: every change re-runs the steps)

Each row: median of N rebuilds, the ratio to the baseline, the RUN steps executed per rebuild
(from buildah's output), and the peak RSS of the buildah process tree's largest member.

    python3 bench/bench_run_order.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.image.support import use_project_containers_conf  # noqa: E402

RUN = [
    "echo 'You can also RUN additional commands in the same way as docker build RUN commands'",
    "echo 'Or use single line command'",
    "echo 'Each command is executed by a single RUN command'",
]


def containerfile(base: str, copy_first: bool) -> str:
    runs = [f"RUN {r}" for r in RUN]
    copy = ["COPY app/ /app/"]
    body = copy + runs if copy_first else runs + copy
    return "\n".join([f"FROM {base}", *body, "WORKDIR /app", ""])


def rebuild(ctx: Path, tag: str) -> tuple[float, int, int]:
    """(seconds, RUN steps executed, peak RSS MiB of any child so far) of one build."""
    from veil.image.tools import container_env

    cmd = ["buildah", "build", "--isolation", "chroot", "--layers", "--pull-never",
           "--timestamp", "0", "-f", str(ctx / "Containerfile"), "-t", tag, str(ctx)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=container_env(), text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"buildah failed:\n{proc.stdout[-2000:]}")
    # an executed RUN prints its echo's text on a line of its own; a cached one does not
    lines = {line.strip() for line in proc.stdout.splitlines()}
    executed = sum(1 for r in RUN if r.split("'")[1] in lines)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return elapsed, executed, peak


def series(base: str, copy_first: bool, runs: int, work: Path) -> tuple[float, int, int]:
    ctx = work / ("sconectl" if copy_first else "baseline")
    (ctx / "app").mkdir(parents=True)
    (ctx / "Containerfile").write_text(containerfile(base, copy_first))
    tag = f"localhost/veil-bench-order/{ctx.name}:{uuid.uuid4().hex[:8]}"
    (ctx / "app" / "main.py").write_text("print('v0')\n")
    rebuild(ctx, tag)  # warm: every layer in the cache
    times, executed, peak = [], [], 0
    for i in range(runs):
        (ctx / "app" / "main.py").write_text(f"print('v{i + 1}')\n")
        t, n, rss = rebuild(ctx, tag)
        times.append(t)
        executed.append(n)
        peak = max(peak, rss)
    subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)
    return statistics.median(times), max(executed), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    use_project_containers_conf()
    from veil.image.base import create_base

    cache = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
    base = "localhost/veil-bench-order/python:bookworm"
    create_base("python", base, cache=cache, push=False)
    with tempfile.TemporaryDirectory(prefix="veil-bench-order-") as tmp:
        rows = [("baseline: RUN x3, then COPY (Veil)", *series(base, False, args.runs,
                                                              Path(tmp))),
                ("sconectl: COPY, then RUN x3", *series(base, True, args.runs, Path(tmp)))]
    t0 = rows[0][1]
    print(f"rebuild after a one-file change of the program, median of {args.runs}")
    print(f"{'order':<38} {'median s':>9} {'ratio':>6} {'RUN steps run':>14} {'peak MiB':>9}")
    for name, t, n, rss in rows:
        print(f"{name:<38} {t:>9.2f} {t / t0:>6.2f} {n:>14} {rss:>9}")


if __name__ == "__main__":
    main()
