#!/usr/bin/env python3
"""Platform build benchmark: `POST /containerbuild` beside the same build run by hand.

In one run, against one local registry, one git daemon and the same overlay storage:

1. The Flask wrapper image of a customer repository (the seed's flow): the time from
   `POST /containerbuild` to the pushed digest, beside the same steps by hand — `git clone` of
   the platform's wrapper repository, `git clone` of the customer repository into the context,
   the same wheels, `buildah bud` with the same build args, `buildah push`. Every run builds a
   new customer commit, so the customer layer and the pip layer after it are rebuilt each time
   (the base and the layers before them come from the cache, for both). Target: <= 1.2x.
2. Builds per minute with 1 and 2 workers on this machine: K builds of distinct commits queued
   at once, wall time until the last one has its digest.
3. The job store's own cost per build (submit, claim, 5 heartbeats, 10 log chunks, finish, read)
   on SQLite and on PostgreSQL, in milliseconds, beside the build time of row 1.

Each row prints the median, its ratio to the baseline and the peak RSS (VmHWM) of the platform
process (buildah's own memory is in neither column).

    python3 bench/bench_containerbuild.py [--runs 3] [--queued 4]

Needs buildah, git, docker-registry, PostgreSQL 15, and the base image's root filesystem (cached
under $VEIL_TEST_CACHE or /var/tmp/veil-test-cache; the first run bootstraps it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.image.support import _start_registry, use_project_containers_conf  # noqa: E402
from tests.platform.conftest import GitServer, start_platform  # noqa: E402
from tests.postgres import postgres  # noqa: E402

EXAMPLE = ROOT / "examples" / "customer-repo"


def peak_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def customer_commit(git: GitServer, n: str) -> str:
    files: dict[str, Any] = {p.name: p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}
    files["VERSION"] = n + "\n"
    return git.repo("customer", files)


def body(wrappers: dict[str, Any], git: GitServer, commit: str, registry: str, base: str,
         image: str) -> dict[str, Any]:
    return {
        "repository": wrappers["repository"], "git_branch": "main",
        "git_commit_sha": wrappers["git_commit_sha"], "image_name": image,
        "dockerfile_path": "flask/Dockerfile", "docker_context": ".", "namespace": "bench",
        "image_tags": ["v1"], "injected_aws_role_arn": "", "injected_aws_account_short_alias": "",
        "registries": [registry], "git_fetch_depth": 1,
        "build_args": {"CUSTOMER_REPOSITORY": git.url("customer"), "CUSTOMER_COMMIT_SHA": commit,
                       "ENTRYPOINT": "model:predict", "BASE_IMAGE": base},
    }


def run(cmd: list[str], cwd: Path | None = None) -> None:
    from veil.image.tools import container_env

    proc = subprocess.run(cmd, cwd=cwd, env=container_env(), capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")


def by_hand(wrappers: dict[str, Any], git: GitServer, commit: str, registry: str, base: str,
            wheels: Path, image: str) -> float:
    """The same clone + buildah bud + push, as a person would type it."""
    with tempfile.TemporaryDirectory(prefix="bench-hand-") as tmp:
        ctx = Path(tmp) / "ctx"
        ref = f"{registry}/{image}:v1"
        t0 = time.perf_counter()
        run(["git", "clone", "-q", "--depth", "1", "--branch", "main", wrappers["repository"],
             str(ctx)])
        run(["git", "clone", "-q", "--depth", "1", git.url("customer"), str(ctx / "veil-customer")])
        run(["git", "-C", str(ctx / "veil-customer"), "checkout", "-q", commit])
        shutil.rmtree(ctx / "veil-customer" / ".git")
        shutil.copytree(wheels, ctx / "veil-wheels", copy_function=os.link)
        run(["buildah", "build", "--isolation", "chroot", "--layers", "--tls-verify=false",
             "-f", str(ctx / "flask" / "Dockerfile"), "--build-arg", f"BASE_IMAGE={base}",
             "--build-arg", "CUSTOMER_REPO_DIR=veil-customer", "--build-arg",
             "ENTRYPOINT=model:predict", "--build-arg", "PIP_FIND_LINKS=veil-wheels",
             "-t", ref, str(ctx)])
        run(["buildah", "push", "--tls-verify=false", "--digestfile", f"{tmp}/d", ref,
             f"docker://{ref}"])
        elapsed = time.perf_counter() - t0
        from veil.platform.build import remove_local

        remove_local([ref])  # as the platform does, after the clock stops
        return elapsed


def by_platform(server: Any, payload: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    build_id = server.submit(payload)
    b = server.wait(build_id, timeout=900)
    if b["status"] != "succeeded":
        raise SystemExit(f"platform build failed: {b['error']}")
    return time.perf_counter() - t0


def throughput(server: Any, payloads: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    ids = [server.submit(p) for p in payloads]
    for i in ids:
        if server.wait(i, timeout=1800)["status"] != "succeeded":
            raise SystemExit(f"build {i} failed: {server.logs(i)[-2000:]}")
    return len(ids) / ((time.perf_counter() - t0) / 60)


def store_cost(url: str, n: int = 200) -> float:
    """Milliseconds of job-store work per build (what the queue itself adds to a build)."""
    from veil.platform.store import JobStore, make_engine

    store = JobStore(make_engine(url))
    request = {"namespace": "bench", "image_name": "bench/x", "build_args": {}}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        build_id = store.submit(request, None)
        row = store.claim("bench:1:x")
        assert row is not None and row.id == build_id
        for seq in range(10):
            store.append_log(build_id, seq, "STEP 1/9: a line of build output\n" * 5)
            if seq % 2:
                store.heartbeat("bench:1:x", [build_id])
        store.finish(build_id, "bench:1:x", "succeeded", digests={"r": "sha256:x"}, images=[])
        store.get(build_id)
        times.append(time.perf_counter() - t0)
    store.engine.dispose()
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--queued", type=int, default=4, help="builds queued at once per worker row")
    args = ap.parse_args()
    use_project_containers_conf()
    os.environ.setdefault("VEIL_HOME", tempfile.mkdtemp(prefix="bench-veil-home-"))
    from veil.image.base import create_python_base

    work = Path(tempfile.mkdtemp(prefix="bench-containerbuild-"))
    addr, reg_proc, reg_work = _start_registry()
    git_port = free_port()
    (work / "git").mkdir()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={work / 'git'}",
         "--listen=127.0.0.1", f"--port={git_port}", str(work / "git")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    git = GitServer(work / "git", git_port)
    servers = []
    try:
        base = f"{addr}/veil/python:bookworm"
        cache = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
        create_python_base(base, cache=cache)
        one = start_platform(work / "p1", workers=1)
        servers.append(one)
        wrappers = one.client.get("/wrappers").json()
        # warm-up (wheels downloaded and cached, base pulled, layer cache filled): not counted
        by_platform(one, body(wrappers, git, customer_commit(git, "warm"), addr, base, "bench/w"))
        wheels = next((work / "p1" / "cache" / "wheels").iterdir())

        hand, plat = [], []
        for i in range(args.runs):
            hand.append(by_hand(wrappers, git, customer_commit(git, f"h{i}"), addr, base, wheels,
                                f"bench/hand{i}"))
            plat.append(by_platform(one, body(wrappers, git, customer_commit(git, f"p{i}"),
                                              addr, base, f"bench/plat{i}")))
        h, p = statistics.median(hand), statistics.median(plat)
        peak_one = peak_mib(one.proc.pid)

        rates = {}
        for workers, server in ((1, one), (2, None)):
            if server is None:
                server = start_platform(work / "p2", workers=2)
                servers.append(server)
                by_platform(server, body(wrappers, git, customer_commit(git, "warm2"), addr, base,
                                         "bench/w2"))
            payloads = [body(wrappers, git, customer_commit(git, f"t{workers}-{i}"), addr, base,
                             f"bench/t{workers}-{i}") for i in range(args.queued)]
            rates[workers] = (throughput(server, payloads), peak_mib(server.proc.pid))

        sqlite_ms = store_cost(f"sqlite:///{work / 'store.db'}")
        pg = postgres("bench_platform")
        pg_url = next(pg)
        try:
            pg_ms = store_cost(pg_url)
        finally:
            pg.close()
    finally:
        for s in servers:
            s.stop()
        os.kill(daemon.pid, signal.SIGTERM)
        os.kill(reg_proc.pid, signal.SIGTERM)
        daemon.wait()
        reg_proc.wait()
        shutil.rmtree(reg_work, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nFlask wrapper image of a customer repository, new customer commit each run; median "
          f"of {args.runs}; {os.cpu_count()} CPUs\n")
    print(f"{'what':<58} {'median':>10} {'ratio':>7} {'MiB':>6}")
    print(f"{'baseline: git clone x2 + buildah bud + push, by hand':<58} {h:>9.1f}s {1:>6.2f}x "
          f"{'-':>6}")
    print(f"{'POST /containerbuild -> pushed digest (1 worker)':<58} {p:>9.1f}s {p / h:>6.2f}x "
          f"{peak_one:>6}")
    base_rate = rates[1][0]
    for workers, (rate, peak) in rates.items():
        label = f"builds per minute, {args.queued} queued, {workers} worker(s)"
        print(f"{label:<58} {rate:>9.2f}  {rate / base_rate:>6.2f}x {peak:>6}")
    for name, ms in (("SQLite", sqlite_ms), ("PostgreSQL", pg_ms)):
        label = f"job store per build, {name} (ms; share of the build)"
        print(f"{label:<58} {ms:>8.1f}ms {ms / 1000 / p:>6.2%} {'-':>6}")
    print("\nMiB = peak RSS of the platform process; ratio of the store rows = its share of the "
          "platform build time above")


if __name__ == "__main__":
    main()
