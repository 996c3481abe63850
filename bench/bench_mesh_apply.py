#!/usr/bin/env python3
"""Benchmark: mesh apply for generated meshes of 10, 100, 1,000 services.

Rows, each measured in this run:
  dry-run            `apply --dry-run` through the use case: descriptions, resolve, compile,
                     target/policies/*.json and the Helm chart (CAS not reachable: no compare),
                     into a new target folder each time
  dry-run again      the same into a target that already holds that output (nothing written)
  baseline resolve   load + resolve only (what `--dry-run` did before sessions and charts)
  upload             a real apply into a local CAS (`veil cas serve`, SQLite): identity check,
                     one read of the current versions, one transaction
  baseline upload    the same sessions sent one request each (`veil session create`'s path)
  re-apply           the same mesh again: nothing changes in CAS
Medians of --repeat runs (uploads run once: each needs a fresh namespace); peak RSS of this
process after the row (ru_maxrss). Targets: 1,000 services dry-run < 5 s; upload of 1,000
sessions < 10 s; unchanged re-apply of 1,000 < 3 s.

    python3 bench/bench_mesh_apply.py [--repeat N] [--sizes 10,100,1000] [--no-cas]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from veil.errors import OperationalError
from veil.manifest.description import ServiceDescription
from veil.manifest.load import load_mesh
from veil.manifest.models import GenService
from veil.mesh import InMemory, MeshOptions, apply_mesh
from veil.mesh.store import SessionStore
from veil.resolve.env import resolve_mesh


def description(i: int) -> ServiceDescription:
    svc = GenService.model_validate({
        "apiVersion": "scone/5.8", "kind": "genservice",
        "environment": {
            "local": [{"name": "SCONE_HEAP", "value": "256M"},
                      {"name": "DB_PASSWORD", "value": "$$SCONE::db_password$$"},
                      {"name": "TOKEN", "value": "$$SCONE::token$$"}],
            "global": [{"name": "API_USER"}, {"name": "PORT", "value": "8080"},
                       {"name": f"OWN_{i}", "value": str(i)}],
        },
        "secrets": {"global": [{"name": "db_password", "kind": "ascii", "size": 16}],
                    "local": [{"name": "token", "kind": "ascii", "size": 24}]},
        "injection_files": [{"path": "/etc/app.conf",
                             "content": "user={{API_USER}}\npw=$$SCONE::db_password$$\n"}],
        "build": {"name": f"svc{i}", "to": f"reg.example/svc{i}:1", "command": "python3 app.py"},
    })
    d = ServiceDescription.from_genservice(svc)
    return d.model_copy(update={"measurement": hashlib.sha256(str(i).encode()).hexdigest()})


def mesh_text(n: int, cas_addr: str, namespace: str) -> str:
    lines = ["apiVersion: scone/5.8", "kind: mesh", "cas:", "- name: cas",
             "  alias: [image, security, access, attestation]", f"  cas_url: {cas_addr}",
             "policy:", f"  namespace: {namespace}", "services:"]
    for i in range(n):
        lines += [f"- name: svc{i}", f"  image: reg.example/svc{i}:1"]
    lines += ["env:", "- name: API_USER", "  value: bench", "- name: APP_SERVICE_PORT",
              "  value: 8443"]
    return "\n".join(lines) + "\n"


def lookup(n: int) -> InMemory:
    by = {f"reg.example/svc{i}:1": description(i) for i in range(n)}
    digests = {k: "sha256:" + hashlib.sha256(k.encode()).hexdigest() for k in by}
    return InMemory(by, digests)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def unreachable(_addr: str, _key: str | None, _t: bool) -> tuple[SessionStore, str | None]:
    raise OperationalError("CAS not started for this row")


class LocalCas:
    """`veil cas serve` on a free loopback port, stopped by its PID."""

    def __init__(self, root: Path) -> None:
        env = dict(os.environ, VEIL_CONFIG_DIR=str(root / "cas-config"))
        state = root / "cas-state"
        out = subprocess.run([sys.executable, "-m", "veil", "cas", "init", "--state-dir",
                              str(state)], capture_output=True, text=True, env=env, check=True)
        self.key = out.stdout.strip().splitlines()[-1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.addr = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veil", "cas", "serve", "--state-dir", str(state),
             "--listen", self.addr], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 1) as s, ctx.wrap_socket(s):
                    pass
                if self.proc.poll() is not None:  # another process had taken the port
                    raise RuntimeError(f"CAS could not listen on {self.addr}")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("CAS did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--no-cas", action="store_true", help="dry-run rows only")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="veil-bench-mesh-"))
    os.environ["VEIL_HOME"] = str(root / "home")
    os.environ["VEIL_CONFIG_DIR"] = str(root / "config")
    rows: list[tuple[str, int, float, float, float]] = []  # name, n, s, baseline s, rss

    for n in sizes:
        mesh = root / f"mesh-{n}.yaml"
        mesh.write_text(mesh_text(n, "127.0.0.1:1", "bench"))
        found = lookup(n)
        def resolve_only(m: Path = mesh, f: InMemory = found) -> None:
            resolve_mesh(load_mesh(m), dict(f.by_image))

        def dry_run(m: Path = mesh, f: InMemory = found, k: int = n) -> None:
            opts = MeshOptions(target=Path(tempfile.mkdtemp(dir=root)) / f"t{k}", dry_run=True)
            apply_mesh(load_mesh(m), opts, descriptions=f, connect=unreachable)

        def dry_again(m: Path = mesh, f: InMemory = found, k: int = n) -> None:
            opts = MeshOptions(target=root / f"t{k}-again", dry_run=True)
            apply_mesh(load_mesh(m), opts, descriptions=f, connect=unreachable)

        base = median(resolve_only, args.repeat)
        rows.append(("baseline resolve", n, base, base, rss_mb()))
        rows.append(("dry-run", n, median(dry_run, args.repeat), base, rss_mb()))
        dry_again()  # the first run writes the tree; the repeats find it unchanged
        rows.append(("dry-run again", n, median(dry_again, args.repeat), base, rss_mb()))

    if not args.no_cas:
        from veil.cas.client import CasClient
        from veil.mesh.trust import trust

        cas = LocalCas(root)
        try:
            trust(cas.addr, cas.key)
            for n in sizes:
                mesh = root / f"mesh-{n}-cas.yaml"
                mesh.write_text(mesh_text(n, cas.addr, f"bench{n}"))
                found = lookup(n)
                opts = MeshOptions(target=root / f"c{n}", write_chart=False)
                t = time.perf_counter()
                result = apply_mesh(load_mesh(mesh), opts, descriptions=found)
                upload = time.perf_counter() - t
                assert result.counts() == {"created": n + 1}, result.counts()
                docs = [o.plan.payload() for o in result.sessions]
                with CasClient(cas.addr, cas.key) as client:
                    t = time.perf_counter()
                    for d in docs:  # the same documents, one request each, other namespace
                        client.create_session(f"one{n}", d)
                    one_by_one = time.perf_counter() - t
                rows.append(("baseline upload", n, one_by_one, one_by_one, rss_mb()))
                rows.append(("upload", n, upload, one_by_one, rss_mb()))

                def again(m: Path = mesh, o: MeshOptions = opts, f: InMemory = found,
                          k: int = n) -> None:
                    r = apply_mesh(load_mesh(m), o, descriptions=f)
                    assert r.counts() == {"unchanged": k + 1}, r.counts()

                rows.append(("re-apply", n, median(again, args.repeat), upload, rss_mb()))
        finally:
            cas.stop()

    print(f"{'row':<18}{'services':>9}{'median s':>11}{'ms/service':>12}{'vs baseline':>13}"
          f"{'peak RSS MB':>13}")
    for name, n, secs, baseline, rss in rows:
        print(f"{name:<18}{n:>9}{secs:>11.3f}{secs * 1000 / n:>12.2f}"
              f"{secs / baseline:>12.2f}x{rss:>13.0f}")
    print("baselines: 'baseline resolve' for dry-run, 'baseline upload' (one request per "
          "session) for upload, the first upload for re-apply")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
