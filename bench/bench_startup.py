#!/usr/bin/env python3
"""Benchmark: start-up of `veil` commands beside a bare interpreter start.

Baseline, measured in the same run and interleaved with the commands: `python3 -c pass`.
Each command is a fresh process (`python3 -m veil ...`, the same interpreter, so a launcher
script's own start — a pyenv shim, say — is not counted). Prints the median wall time and CPU time
(user + system: steadier on a loaded machine), their ratios to the baseline and the peak
resident memory of the child (ru_maxrss).
Targets: `--version` and `--help` ≤ 1.5 times the baseline; the dry run of the seeds' hello-user
service manifest ≤ 0.3 s.

    python3 bench/bench_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "examples" / "hello-user" / "service.yaml"


def run_once(args: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process. CPU time is the
    steadier figure on a loaded machine: waiting for a CPU is not in it."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{p.stderr.decode()[-2000:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    opts = ap.parse_args()
    py = sys.executable
    work = tempfile.mkdtemp(prefix="veil-bench-startup-")
    env = dict(os.environ, VEIL_HOME=f"{work}/home", VEIL_CONFIG_DIR=f"{work}/config")
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # as an installed Veil runs: from .pyc files (pip compiles them at install); without them
    # every run compiles the modules from source again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "src" / "veil")], env=env,
                   stdout=subprocess.DEVNULL, check=False)
    cases = {
        "python3 -c pass (baseline)": [py, "-c", "pass"],
        "veil --version": [py, "-m", "veil", "--version"],
        "veil --help": [py, "-m", "veil", "--help"],
        "veil schema --help": [py, "-m", "veil", "schema", "--help"],
        "veil apply -f service.yaml --dry-run": [
            py, "-m", "veil", "apply", "-f", str(SERVICE), "--dry-run", "-t", f"{work}/target"],
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpus: dict[str, list[float]] = {k: [] for k in cases}
    peaks: dict[str, float] = dict.fromkeys(cases, 0.0)
    try:
        for args in cases.values():  # warm the page cache and .pyc files once
            run_once(args, env, work)
        for _ in range(opts.repeat):  # interleaved, so load on the machine hits all alike
            for name, args in cases.items():
                wall, cpu = run_once(args, env, work)
                times[name].append(wall)
                cpus[name].append(cpu)
        for name, args in cases.items():  # peak RSS: a child of its own, measured alone
            probe = subprocess.run(
                [py, "-c", "import resource, subprocess, sys; subprocess.run(sys.argv[1:], "
                 "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(resource."
                 "getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)", *args],
                env=env, cwd=work, capture_output=True, text=True, check=True)
            peaks[name] = int(probe.stdout.strip()) / 1024
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["python3 -c pass (baseline)"])
    cbase = statistics.median(cpus["python3 -c pass (baseline)"])
    print(f"{'command':40} {'wall':>9} {'ratio':>6} {'cpu':>9} {'ratio':>6} {'peak RSS':>10}"
          f"   (medians, n={opts.repeat})")
    for name in cases:
        med, cpu = statistics.median(times[name]), statistics.median(cpus[name])
        print(f"{name:40} {med * 1000:6.1f} ms {med / base:5.2f}x {cpu * 1000:6.1f} ms "
              f"{cpu / cbase:5.2f}x {peaks[name]:6.1f} MiB")
    print("targets: --version, --help <= 1.50x baseline; dry run <= 300 ms")


if __name__ == "__main__":
    main()
