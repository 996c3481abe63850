#!/usr/bin/env python3
"""Benchmark: `veil up` → the first greeting of hello-user, beside a plain `podman run`.

Measured in the same run, each a fresh process, medians of --repeat runs:
  podman run (baseline)   the same image, its program run directly: no launcher, no CAS
  podman run + launcher   the image as built: the launcher measures, attests to the running CAS,
                          gets its environment and execs the program (what attestation adds)
  veil up, warm           CAS and registry running, the service's container removed first
  veil up, cold           nothing running: `veil down --volumes` first (a new local CAS)
Each ends when the greeting is in the container's output. Peak RSS is that of the `veil`
process (ru_maxrss of the children). Targets: warm <= 2 s; the launcher adds <= 150 ms.

Needs buildah, podman, docker-registry and the base image's cached root filesystem
($VEIL_TEST_CACHE, default /var/tmp/veil-test-cache; made on first use, ~40 s).

    python3 bench/bench_up.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "hello-user"

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: 127.0.0.1:9
    tolerance: "--only_for_testing-debug"
policy:
  namespace: bench-up
services:
  - name: pythonapp
    image: {image}
env:
  - name: API_USER
    value: myself
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(args: list[str], env: dict[str, str], expect: str | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if p.returncode != 0 or (expect and expect not in p.stdout + p.stderr):
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-1500:]}"
                         f"{p.stderr[-1500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    for tool in ("buildah", "podman", "docker-registry"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool} (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="veil-bench-up-"))
    env = dict(os.environ, VEIL_HOME=str(work / "home"), VEIL_CONFIG_DIR=str(work / "config"))
    veil = [sys.executable, "-m", "veil"]
    port = free_port()
    conf = (ROOT / "scripts/containers/registry-config.yml.in").read_text()
    (work / "registry.yml").write_text(conf.replace("@ADDR@", f"127.0.0.1:{port}")
                                       .replace("@ROOT@", str(work / "registry")))
    reg = subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    registry = f"127.0.0.1:{port}"
    times: dict[str, list[float]] = {}
    peak = 0.0
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        cache = os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache")
        base = f"{registry}/veil/python:bookworm"
        timed([*veil, "base", "create", "python", "--to", base, "--cache", cache], env)
        src = work / "src"
        src.mkdir()
        shutil.copy(HELLO / "print_env.py", src)
        text = (HELLO / "service.yaml").read_text()
        image = f"{registry}/bench/hello:1"
        (src / "service.yaml").write_text(
            text.replace("127.0.0.1:5000/veil/python_hello_user:latest", image)
            .replace("  pwd: /python", f"  from: {base}\n  pwd: /python"))
        subprocess.run([*veil, "apply", "-f", "service.yaml"], cwd=src, env=env, check=True,
                       capture_output=True)
        mesh = work / "mesh.yaml"
        mesh.write_text(MESH.format(image=image))
        up = [*veil, "up", "-f", str(mesh), "--mode", "debug", "-t", str(work / "target")]
        timed(up, env)  # first run: the local CAS, the session
        from veil.image.tools import container_env

        cenv = {**container_env(), **{k: v for k, v in env.items() if k.startswith("VEIL_")}}
        name = "veil-bench-up-pythonapp"
        plain = ["podman", "run", "--rm", "--init", "--network", "veil-bench-up",
                 "--entrypoint", "/usr/bin/python3", "-w", "/python", "-e", "API_USER=myself",
                 "-e", "API_PASSWORD=not-from-cas", image, "print_env.py"]

        def attested() -> list[str]:
            """The launcher's line for the CAS running now (a cold `veil up` starts a new one:
            another port, another key)."""
            cas_addr = (work / "home/local/cas/addr").read_text().split()[0]
            key = subprocess.run(
                [*veil, "cas", "key", "--state-dir", str(work / "home/local/cas")], env=env,
                capture_output=True, text=True, check=True).stdout.strip()
            return ["podman", "run", "--rm", "--init", "--network", "veil-bench-up",
                    "-e", "SCONE_CONFIG_ID=bench-up/pythonapp/pythonapp",
                    "-e", f"SCONE_CAS_ADDR={cas_addr}", "-e", f"SCONE_CAS_KEY={key}", image]
        cases = {"podman run (baseline)": [], "podman run + launcher": [],
                 "veil up, warm": [], "veil up, cold": []}
        times.update(cases)
        for _ in range(opts.repeat):
            times["podman run (baseline)"].append(timed(plain, cenv, "Hello myself"))
            times["podman run + launcher"].append(timed(attested(), cenv, "Hello myself"))
            subprocess.run(["podman", "rm", "-f", name], env=cenv, capture_output=True,
                           check=False)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            times["veil up, warm"].append(timed(up, env))
            peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
            subprocess.run([*veil, "down", "--volumes"], env=env, capture_output=True,
                           check=False)
            times["veil up, cold"].append(timed(up, env))
            out = subprocess.run([*veil, "logs", "--mesh", str(mesh), "pythonapp"], env=env,
                                 capture_output=True, text=True, check=False).stdout
            if "Hello myself" not in out:
                raise SystemExit(f"no greeting after veil up:\n{out[-1000:]}")
    finally:
        subprocess.run([*veil, "down", "--volumes"], env=env, capture_output=True, check=False)
        reg.terminate()
        reg.wait()
        shutil.rmtree(work, ignore_errors=True)
    base_t = statistics.median(times["podman run (baseline)"])
    print(f"{'case':28} {'median':>9} {'ratio':>7}   (n={opts.repeat})")
    for case, ts in times.items():
        med = statistics.median(ts)
        print(f"{case:28} {med * 1000:7.0f} ms {med / base_t:6.2f}x")
    added = statistics.median(times["podman run + launcher"]) - base_t
    print(f"the launcher adds {added * 1000:.0f} ms to a container start (target <= 150 ms); "
          f"peak RSS of veil up {peak / 1024:.0f} MiB")
    print("targets: veil up, warm <= 2000 ms")


if __name__ == "__main__":
    main()
