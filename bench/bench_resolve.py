#!/usr/bin/env python3
"""Benchmark: load + resolve, and --print-defaults, for generated meshes of 10, 100, 1,000 services.

Baseline, measured in the same run: parsing the same mesh file with ruamel.yaml round-trip
(what any comment-keeping tool must pay before doing anything). Prints median time, time per
service, the ratio to the baseline and peak Python memory (tracemalloc, separate run).
Target: 1,000 services resolved in under 2 s.

    python3 bench/bench_resolve.py [--repeat N] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import tracemalloc
from collections.abc import Callable

from ruamel.yaml import YAML

from veil.manifest.description import ServiceDescription
from veil.manifest.load import load_mesh
from veil.manifest.models import GenService
from veil.resolve.defaults import print_defaults
from veil.resolve.env import resolve_mesh


def description(i: int) -> ServiceDescription:
    svc = GenService.model_validate({
        "apiVersion": "scone/5.8",
        "kind": "genservice",
        "environment": {
            "local": [{"name": "SCONE_HEAP", "value": "256M"},
                      {"name": "DB_PASSWORD", "value": "$$SCONE::db_password$$"},
                      {"name": "SELF_URL", "value": "https://{{service_name}}.{{namespace}}"}],
            "global": [{"name": "API_USER"},
                       {"name": "LOG_LEVEL", "value": "info" if i % 2 else "debug"},
                       {"name": "PORT", "value": "8080"},
                       {"name": f"OWN_{i}", "value": str(i)},
                       {"name": "UPSTREAM", "value": "{{ UPSTREAM_HOST | default(value=\"x\") }}"}],
        },
        "secrets": {"global": [{"name": "db_password", "kind": "ascii", "size": 16}]},
        "injection_files": [{"path": "/etc/app.conf",
                             "content": "user={{API_USER}}\npw=$$SCONE::db_password$$\n"}],
        "build": {"name": f"svc{i}", "to": f"reg.example/svc{i}:1", "command": "python3 app.py"},
    })
    return ServiceDescription.from_genservice(svc)


def mesh_text(n: int) -> str:
    lines = ["apiVersion: scone/5.8", "kind: mesh", "cas:", "- name: cas",
             "  alias: [image, security, access, attestation]", "  cas_url: cas.example:8081",
             "policy:", "  namespace: bench  # generated", "services:"]
    for i in range(n):
        lines += [f"- name: svc{i}", f"  image: reg.example/svc{i}:1"]
    lines += ["env:", "- service: global", "  env:", "  - name: API_USER", "    value: bench",
              "  - name: UPSTREAM_HOST", "    value: upstream.example"]
    return "\n".join(lines) + "\n"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="10,100,1000")
    args = ap.parse_args()
    print(f"{'services':>8} {'step':<15} {'median ms':>10} {'ms/service':>10} "
          f"{'x baseline':>10} {'peak MiB':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        run_size(n, args.repeat)


def run_size(n: int, repeat: int) -> None:
    text = mesh_text(n)
    descs = {d.image: d for d in (description(i) for i in range(n))}
    steps: dict[str, Callable[[], object]] = {
        "baseline parse": lambda: YAML(typ="rt").load(io.StringIO(text)),
        "load+resolve": lambda: resolve_mesh(load_mesh("bench.yaml", text), descs),
        "print-defaults": lambda: print_defaults(text, "bench.yaml", descs),
    }
    base = median_time(steps["baseline parse"], repeat)
    for name, fn in steps.items():
        t = base if name == "baseline parse" else median_time(fn, repeat)
        print(f"{n:>8} {name:<15} {t * 1e3:>10.1f} {t * 1e3 / n:>10.3f} "
              f"{t / base:>10.2f} {peak_mib(fn):>9.1f}", flush=True)

if __name__ == "__main__":
    main()
