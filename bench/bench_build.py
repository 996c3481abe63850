#!/usr/bin/env python3
"""Build benchmark: `veil apply -f service.yaml` beside a plain `buildah bud --layers`.

For the seeds' hello-user service, in one run against one local registry and the same overlay
storage: a cold build, a warm rebuild with nothing changed, and a rebuild + push after changing
one application file. The baseline is `buildah bud --layers --isolation chroot` of an equivalent
hand-written Containerfile (FROM base, COPY the program, ENTRYPOINT), measured in the same run.
Each row prints the median of N runs, its ratio to the baseline, and the peak RSS of the measured
process (the `veil` process itself; buildah's own memory is not included in either column).

    python3 bench/bench_build.py [--runs 5]

Needs buildah, docker-registry and the base image's root filesystem (the first run on a machine
bootstraps it with debootstrap, ~40 s, cached under $VEIL_TEST_CACHE or /var/tmp/veil-test-cache).
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
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.image.support import (  # noqa: E402
    _remove_local_images,
    _start_registry,
    hello_service,
    use_project_containers_conf,
)


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """(seconds, peak RSS in MiB) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss // 1024


def series(n: int, prepare: Callable[[int], None], cmds: Callable[[], list[list[str]]],
           cwd: Path) -> tuple[float, int]:
    times, peak = [], 0
    for i in range(n):
        prepare(i)
        total = 0.0
        for cmd in cmds():
            t, rss = timed(cmd, cwd)
            total += t
            peak = max(peak, rss)
        times.append(total)
    return statistics.median(times), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for tool in ("buildah", "docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool}")
    work = Path(tempfile.mkdtemp(prefix="veil-bench-"))
    os.environ["VEIL_HOME"] = str(work / "home")
    os.environ["VEIL_CONFIG_DIR"] = str(work / "config")
    use_project_containers_conf()
    registry, reg_proc, reg_dir = _start_registry()
    try:
        from veil.image.base import create_python_base

        base = f"{registry}/veil/python:bookworm"
        cache = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
        create_python_base(base, cache=cache)
        run_bench(work, registry, base, args.runs)
    finally:
        os.kill(reg_proc.pid, 15)
        reg_proc.wait()
        _remove_local_images(registry)
        shutil.rmtree(reg_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def run_bench(work: Path, registry: str, base: str, n: int) -> None:
    veil_dir, hand_dir = work / "veil", work / "hand"
    manifest = hello_service(veil_dir, registry, base, name="bench-hello",
                             extra="  run:\n    - echo cold-0\n")
    hand_dir.mkdir()
    program = veil_dir / "print_env.py"
    shutil.copy(program, hand_dir / "print_env.py")
    hand_image = f"{registry}/bench/hand:1"

    def hand_containerfile(marker: str) -> None:
        (hand_dir / "Containerfile").write_text(
            f"FROM {base}\nRUN echo {marker}\nCOPY print_env.py /python/print_env.py\n"
            "WORKDIR /python\nENTRYPOINT [\"python3\", \"print_env.py\"]\n")

    veil = [sys.executable, "-m", "veil", "apply", "-f", str(manifest)]
    bud = ["buildah", "bud", "--layers", "--isolation", "chroot", "-t", hand_image, "."]
    push = ["buildah", "push", "--tls-verify=false", hand_image, f"docker://{hand_image}"]
    text = manifest.read_text()

    def cold(i: int) -> None:  # a fresh first step invalidates every layer after it
        marker = f"cold-{uuid.uuid4().hex}"
        manifest.write_text(text.replace("echo cold-0", f"echo {marker}"))
        hand_containerfile(marker)

    def nothing(i: int) -> None:
        pass

    def one_file(i: int) -> None:
        for d in (veil_dir, hand_dir):
            with (d / "print_env.py").open("a") as f:
                f.write(f"# change {i}\n")

    def library(prepare: Callable[[int], None]) -> tuple[float, int]:
        """The same build called in-process, as a long-running service would (no CLI start)."""
        from veil.image.builder import build_service
        from veil.manifest.load import load_genservice

        times = []
        for i in range(n):
            prepare(i)
            t0 = time.perf_counter()
            loaded = load_genservice(manifest)
            build_service(loaded.model, manifest, target=veil_dir / "target",
                          positions=loaded.positions)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    no_fast = ["env", "VEIL_NO_FAST_PATH=1", *veil]
    rows: list[tuple[str, tuple[float, int], tuple[float, int], str]] = []
    cold_n = max(2, n // 2)
    rows.append(("cold build + push (veil CLI)", series(cold_n, cold, lambda: [veil], veil_dir),
                 series(cold_n, cold, lambda: [bud], hand_dir), "buildah bud (cold)"))
    cold(0)
    series(1, nothing, lambda: [veil], veil_dir)
    series(1, nothing, lambda: [bud], hand_dir)
    warm_bud = series(n, nothing, lambda: [bud], hand_dir)
    rows.append(("nothing changed, + push (veil CLI)",
                 series(n, nothing, lambda: [veil], veil_dir), warm_bud, "buildah bud (warm)"))
    rows.append(("nothing changed, + push (library)", library(nothing), warm_bud,
                 "buildah bud (warm)"))
    one_bud = series(n, one_file, lambda: [bud], hand_dir)
    one_bud_push = series(n, one_file, lambda: [bud, push], hand_dir)
    rows.append(("one file changed, + push (veil CLI)",
                 series(n, one_file, lambda: [veil], veil_dir), one_bud, "buildah bud"))
    rows.append(("one file changed, + push (library)", library(one_file), one_bud,
                 "buildah bud"))
    rows.append(("one file changed, + push (library)", library(one_file), one_bud_push,
                 "buildah bud + push"))
    rows.append(("one file, + push, buildah path (CLI)",
                 series(n, one_file, lambda: [no_fast], veil_dir), one_bud_push,
                 "buildah bud + push"))
    print(f"\nveil apply vs hand-written buildah bud --layers (overlay), median of {n} runs "
          f"({cold_n} for cold); MiB = peak RSS of the veil process (buildah not included)\n")
    print(f"{'case':38} {'veil s':>7} {'MiB':>5} {'baseline':>19} {'base s':>7} {'ratio':>6}")
    for name, (vt, vm), (bt, _), bname in rows:
        print(f"{name:38} {vt:7.3f} {vm:5d} {bname:>19} {bt:7.3f} {vt / bt:6.2f}")


if __name__ == "__main__":
    main()
