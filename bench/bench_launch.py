#!/usr/bin/env python3
"""Launch benchmark: the attested start (measure the whole root filesystem, attest, exec) beside
starting the program directly, for the hello-user image, in one run — for the image as services
are built now (on the runtime base: interpreter, standard library, the libraries they need) and,
for comparison, the same service built on the full build base (shell, pip, dpkg, ...).

Rows, each the median of N interleaved runs, per image:
- inside one container (no podman start-up in the numbers): the program started directly
  (`python3 print_env.py`, the baseline), the launcher measuring only (`--print-measurement`),
  and the launcher's full path — refusal checks, measurement, nonce and provisioning from a real
  CAS over TLS, exec of the program. Peak memory is the child's peak RSS (kept across exec).
- `podman run` of the image straight into the program (baseline) vs `podman run` of the image
  through the launcher, against the same CAS; the four podman cases interleaved.
- the measurement of the mounted image on the host in one process vs with the default worker
  processes (one per CPU), and the entries, files and bytes it reads.

    python3 bench/bench_launch.py [--runs 15]

Needs buildah, podman, docker-registry and the base image's root filesystem (the first run on a
machine bootstraps it with debootstrap, ~40 s, cached under $VEIL_TEST_CACHE or
/var/tmp/veil-test-cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.image.support import (  # noqa: E402
    _remove_local_images,
    _start_registry,
    hello_service,
    use_project_containers_conf,
)

# set in main(): REGISTRY/bench/launch-hello:1 (runtime base) and :full (build base), built
# locally (not pushed)
IMAGES: dict[str, str] = {}

# Runs inside the container: each case as a child process, interleaved, N times; prints JSON.
HARNESS = r"""
import json, os, resource, subprocess, sys, time
n, cas_env = int(sys.argv[1]), json.loads(sys.argv[2])
launcher = ["/usr/bin/python3", "-I", "-S", "-B", "/opt/veil/launch.py"]
cases = {
    "program": (["/usr/bin/python3", "print_env.py"],
                {"PATH": "/usr/bin:/bin", "API_USER": "me", "API_PASSWORD": "pw"}),
    "measure": (launcher + ["--print-measurement"], {"PATH": "/usr/bin:/bin"}),
    "attested": (launcher, cas_env),
}
out = {k: {"times": [], "rss": [], "cpu": []} for k in cases}
for i in range(n + 1):
    for name, (argv, env) in cases.items():
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, env=env, cwd="/python", stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        if status != 0:
            sys.exit(name + " failed: " + p.stderr.read().decode()[-2000:])
        if i:  # the first round warms the page cache
            out[name]["times"].append(dt)
            out[name]["rss"].append(usage.ru_maxrss)
            out[name]["cpu"].append(usage.ru_utime + usage.ru_stime)
print(json.dumps(out))
"""


def veil(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "veil", *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"veil {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def start_cas(work: Path, env: dict[str, str]) -> tuple[str, str, subprocess.Popen[bytes]]:
    state = work / "cas"
    key = veil("cas", "init", "--state-dir", str(state), "--host", "127.0.0.1",
               env=env).strip().splitlines()[-1]
    port = free_port()
    log = (work / "cas.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "veil", "cas", "serve", "--state-dir",
                             str(state), "--listen", f"127.0.0.1:{port}"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s, \
                    ctx.wrap_socket(s):
                return f"127.0.0.1:{port}", key, proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit((work / "cas.log").read_text()[-2000:]) from None
            time.sleep(0.1)


def session(desc: dict[str, object], measurements: list[str]) -> dict[str, object]:
    env = {e["name"]: e["value"] for e in desc["local_env"]}  # type: ignore[attr-defined]
    env["API_USER"] = "me"
    return {
        "version": "0.3", "name": "bench", "security": {"attestation": {"mode": "debug"}},
        "services": [{"name": "hello", "image_name": "img", "command": desc["command"],
                      "pwd": desc["pwd"], "environment": env,
                      "attestation": {"measurement": measurements}}],
        "secrets": [{"name": s["name"], "kind": s["kind"], "size": s["size"]}
                    for s in desc["secrets"]],  # type: ignore[attr-defined]
        "images": [{"name": "img"}],
    }


def podman(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(["podman", "run", "--rm", "--init", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0 or "Hello me" not in proc.stdout:
        raise SystemExit(f"podman run {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return time.perf_counter() - t0


def host_measurement(image: str, plan_json: str) -> dict[str, float]:
    """Entries, files and bytes the measurement reads, and its time on the host (mounted
    image), in one process and with the default workers."""
    from veil.image.measurement import mounted_image
    from veil.runtime import measure as m

    plan = m.MeasurementPlan.from_json(plan_json)
    out: dict[str, float] = {}
    with mounted_image(image, "mounting the benchmark image") as root:
        entries = m.scan(root, plan)
        files = [e for e in entries if e.kind == "f"]
        out["entries"], out["files"] = len(entries), len(files)
        out["bytes"] = sum(os.lstat(os.path.join(root, e.path.lstrip("/"))).st_size
                           for e in files)
        default = m._workers()
        for label, workers in (("in-process", 0), (f"{default} workers", default)):
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                m.measure(root, plan, workers=workers)
                times.append(time.perf_counter() - t0)
            out[label] = statistics.median(times)
    return out


def build(work: Path, env: dict[str, str], registry: str, base: str, tag: str) -> Path:
    """Build the hello-user service on `base` as REGISTRY/bench/launch-hello:TAG; its context."""
    src = work / f"src-{tag}"
    manifest = hello_service(src, registry, base, name="launch-hello")
    manifest.write_text(manifest.read_text().replace("/test/launch-hello:1",
                                                     f"/bench/launch-hello:{tag}"))
    proc = subprocess.run(
        [sys.executable, "-m", "veil", "apply", "-f", str(manifest), "--no-push"],
        cwd=src, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"veil apply failed:\n{proc.stdout}{proc.stderr}")
    return src / "target/launch-hello"


def full_base(base: str) -> str:
    """The build base under another name, without the label that names its runtime base: a
    service built on it runs on the full build base, as every service did before."""
    from veil.image.runtime import RUNTIME_LABEL
    from veil.image.tools import run_tool

    full = base.rsplit(":", 1)[0] + ":bookworm-full"
    cid = run_tool(["buildah", "from", "--pull-never", "--quiet", base],
                   what="copying the build base").stdout.decode().strip()
    try:
        run_tool(["buildah", "config", "--label", f"{RUNTIME_LABEL}-", cid], what="relabel")
        run_tool(["buildah", "commit", "--quiet", "--rm", cid, full], what="commit")
    except BaseException:
        subprocess.run(["buildah", "rm", cid], capture_output=True, check=False)
        raise
    return full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    for tool in ("buildah", "podman", "docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool}")
    work = Path(tempfile.mkdtemp(prefix="veil-bench-launch-"))
    env = dict(os.environ, VEIL_HOME=str(work / "home"), VEIL_CONFIG_DIR=str(work / "config"))
    os.environ.update(VEIL_HOME=env["VEIL_HOME"], VEIL_CONFIG_DIR=env["VEIL_CONFIG_DIR"])
    use_project_containers_conf()
    env.update({k: os.environ[k] for k in os.environ if k.startswith("CONTAINERS_")})
    cas_proc = None
    registry, reg_proc, reg_dir = _start_registry()
    try:
        from veil.image.base import create_python_base

        base = f"{registry}/veil/python:bookworm"
        cache = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
        create_python_base(base, cache=cache)
        contexts = {"runtime base": build(work, env, registry, base, "1"),
                    "full build base": build(work, env, registry, full_base(base), "full")}
        IMAGES.update({"runtime base": f"{registry}/bench/launch-hello:1",
                       "full build base": f"{registry}/bench/launch-hello:full"})
        descs = {k: json.loads((c / "description.json").read_text())
                 for k, c in contexts.items()}
        addr, key, cas_proc = start_cas(work, env)
        doc = session(descs["runtime base"], [d["measurement"] for d in descs.values()])
        (work / "session.json").write_text(json.dumps(doc))
        veil("session", "create", "-f", str(work / "session.json"), "-n", "bench", "--cas", addr,
             "--cas-key", key, env=env)
        plans = {k: (c / "rootfs/etc/veil/measured.json").read_text()
                 for k, c in contexts.items()}
        run_bench(args.runs, addr, key, plans)
    finally:
        if cas_proc is not None:
            os.kill(cas_proc.pid, signal.SIGTERM)
            cas_proc.wait()
        os.kill(reg_proc.pid, signal.SIGTERM)
        reg_proc.wait()
        _remove_local_images(registry)
        shutil.rmtree(reg_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def inside(image: str, n: int, cas_env: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    proc = subprocess.run(
        ["podman", "run", "--rm", "--init", "--entrypoint", "/usr/bin/python3", image, "-c",
         HARNESS, str(n), json.dumps(cas_env)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"in-container harness failed:\n{proc.stderr[-3000:]}")
    out: dict[str, dict[str, list[float]]] = json.loads(proc.stdout)
    return out


def run_bench(n: int, addr: str, key: str, plans: dict[str, str]) -> None:
    cas_env = {"SCONE_CONFIG_ID": "bench/bench/hello", "SCONE_CAS_ADDR": addr,
               "SCONE_CAS_KEY": key}
    cas_args = [a for k, v in cas_env.items() for a in ("-e", f"{k}={v}")]
    inner = {k: inside(image, n, cas_env) for k, image in IMAGES.items()}
    times: dict[tuple[str, str], list[float]] = {}
    for image in IMAGES.values():  # warm: the first start of an image reads its layers
        podman("--entrypoint", "/usr/bin/python3", "-e", "API_USER=me", image, "print_env.py")
    for _ in range(n):
        for k, image in IMAGES.items():
            times.setdefault((k, "direct"), []).append(podman(
                "--entrypoint", "/usr/bin/python3", "-e", "API_USER=me", "-e", "API_PASSWORD=pw",
                image, "print_env.py"))
            times.setdefault((k, "attested"), []).append(podman(*cas_args, image))
    host = {k: host_measurement(image, plans[k]) for k, image in IMAGES.items()}

    def med(xs: list[float]) -> float:
        return statistics.median(xs) * 1000

    print(f"\nlaunch of the hello-user image, median of {n} interleaved runs; MiB = peak RSS; "
          "CPU ms = user + system time of the process, its threads and worker processes\n")
    for k in IMAGES:
        data = inner[k]
        base = med(data["program"]["times"])
        print(f"image on the {k}:")
        print(f"  {'case':46} {'wall ms':>8} {'+ms':>8} {'ratio':>6} {'CPU ms':>8} {'MiB':>6}")
        for label, name in (("in container: program directly (baseline)", "program"),
                            ("in container: launcher, measurement only", "measure"),
                            ("in container: launcher → CAS → exec program", "attested")):
            t = med(data[name]["times"])
            cpu = med(data[name]["cpu"])
            rss = max(data[name]["rss"]) / 1024
            print(f"  {label:46} {t:8.1f} {t - base:8.1f} {t / base:6.2f} {cpu:8.1f} "
                  f"{rss:6.1f}")
        pd, pa = med(times[(k, "direct")]), med(times[(k, "attested")])
        print(f"  {'podman run: straight into the program (base)':46} {pd:8.1f} {0.0:8.1f} "
              f"{1.0:6.2f} {'-':>8} {'-':>6}")
        print(f"  {'podman run: through the launcher, attested':46} {pa:8.1f} {pa - pd:8.1f} "
              f"{pa / pd:6.2f} {'-':>8} {'-':>6}")
        h = host[k]
        print(f"  measured: {int(h['entries'])} entries, {int(h['files'])} files, "
              f"{h['bytes'] / 1e6:.1f} MB read")
        one = h["in-process"]
        for w in [w for w in h if w == "in-process" or w.endswith("workers")]:
            print(f"  host, mounted image, measured {w:12} {h[w] * 1000:8.1f} ms "
                  f"(ratio to in-process {h[w] / one:.2f})")
        print()


if __name__ == "__main__":
    main()
