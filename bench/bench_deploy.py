#!/usr/bin/env python3
"""Benchmark of `veil deploy`: pre-deploy checks + GitOps commit + push, beside committing the
same files by hand, measured in the same run.

Contenders, each on a fresh GitOps working copy with a bare remote on local disk:
  git-by-hand   write the files Veil wrote, `git add -A`, `git commit`, `git push`  <- baseline
  veil-deploy   `veil.deploy.apply.deploy`: teams file, image + sidecar looked up in a real
                registry on loopback (manifest, config), env scan of the code, chart rendered
                with Helm's engine, Argo CD objects validated (CRD schema + strict pass), one
                commit, push
  veil-cli      `veil deploy -f` as a new process (imports included), one deployment

Scenarios: "one deployment" (the team's first: AppProject, namespace and charts included),
median of --rounds fresh repositories, in a warm process (one deployment beforehand compiled
the schema validators and loaded Helm's library, as a running platform service has);
"100 deployments of one team" (apps app-000..099, one alias moving along), median per
deployment and the total. Prints one table with medians, the ratio to the baseline, the
CPU time (this process and its git children; the registry and Helm's engine in-process) and peak
RSS. Usage:
    python3 bench/bench_deploy.py [--rounds 5] [--deployments 100]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from veil.deploy.apply import deploy  # noqa: E402
from veil.deploy.gitops import GitOpsRepo  # noqa: E402
from veil.deploy.images import RegistryImages  # noqa: E402
from veil.deploy.load import load_deployment  # noqa: E402
from veil.image.reference import parse_reference  # noqa: E402
from veil.image.registry import OCI_MANIFEST, Registry  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/bench"
CODE = "import os\nURL = os.environ['MODEL_URL']\nT = os.getenv('THRESHOLD', '0.5')\n"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@b"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    addr = f"127.0.0.1:{free_port()}"
    conf = (ROOT / "scripts" / "containers" / "registry-config.yml.in").read_text()
    (work / "registry.yml").write_text(conf.replace("@ADDR@", addr)
                                       .replace("@ROOT@", str(work / "registry")))
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(200):
        try:
            if httpx.get(f"http://{addr}/v2/", timeout=1).status_code == 200:
                return addr, proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def push_image(ref: str, env: dict[str, str], labels: dict[str, str]) -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/marker")
        info.size = len(ref)
        tar.addfile(info, io.BytesIO(ref.encode()))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [f"{k}={v}" for k, v in env.items()], "Labels": labels},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
    }).encode()
    r = parse_reference(ref)
    with Registry(r) as reg:
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": reg.put_blob(cfg), "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": reg.put_blob(layer), "size": len(layer)}],
        }
        return reg.put_manifest(r.tag or "latest", manifest, OCI_MANIFEST)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def new_repo(base: Path, name: str) -> Path:
    work, bare = base / name, base / f"{name}.git"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    (work / "teams.yaml").write_text("teams:\n  - name: ml\n")
    git(work, "add", "teams.yaml")
    git(work, "commit", "-q", "-m", "teams")
    git(base, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    return work


def deployment(folder: Path, app: str, image: str, sidecar: str) -> Path:
    path = folder / f"{app}.yaml"
    path.write_text(
        f"team: ml\napp: {app}\nimage: {image}\nchart: {{wrapper: flask}}\ncode: ./code\n"
        f"env: {{MODEL_URL: s3://models/{app}}}\nalias: live\n"
        f"sidecars: [{{name: logship, image: {sidecar}}}]\n")
    return path


def _cpu() -> float:
    """CPU seconds of this process and its finished children (git): what a busy machine's
    wall clock hides."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


CPU: dict[str, list[float]] = {"veil": [], "hand": []}


def by_hand(veil_repo: Path, hand_repo: Path, files: tuple[str, ...], message: str) -> float:
    """Copy the files Veil committed, then time add + commit + push of them."""
    for rel in files:
        src, dst = veil_repo / rel, hand_repo / rel
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        else:
            dst.unlink(missing_ok=True)
    t, c = time.perf_counter(), _cpu()
    git(hand_repo, "add", "-A")
    git(hand_repo, "commit", "-q", "-m", message)
    git(hand_repo, "push", "-q", "origin", "main")
    CPU["hand"].append(_cpu() - c)
    return time.perf_counter() - t


def run(base: Path, n: int, image: str, sidecar: str) -> tuple[list[float], list[float]]:
    veil_repo, hand_repo = new_repo(base, "veil"), new_repo(base, "hand")
    veil_times, hand_times = [], []
    with RegistryImages() as images:
        for i in range(n):
            path = deployment(base, f"app-{i:03d}", image, sidecar)
            t, c = time.perf_counter(), _cpu()
            done = deploy(load_deployment(path), GitOpsRepo(veil_repo), images)
            veil_times.append(time.perf_counter() - t)
            CPU["veil"].append(_cpu() - c)
            assert done.commit is not None
            hand_times.append(by_hand(veil_repo, hand_repo, done.commit.files,
                                      done.commit.message))
    return veil_times, hand_times


def cli_once(base: Path, image: str, sidecar: str) -> float:
    repo = new_repo(base, "cli")
    path = deployment(base, "app-cli", image, sidecar)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "veil", "deploy", "-f", str(path), "--gitops",
                    str(repo)], env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--deployments", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="veil-bench-deploy-"))
    addr, registry = start_registry(work)
    try:
        image = f"{addr}/ml/fraud:1"
        digest = push_image(image, {"VEIL_ENTRYPOINT": "model:predict"},
                            {"io.veil.platform.aws-role-arn": ROLE})
        sidecar = f"{addr}/infra/logship:2"
        push_image(sidecar, {}, {})
        (work / "code").mkdir()
        (work / "code" / "model.py").write_text(CODE)
        pinned = f"{image}@{digest}"

        # warm-up: the CRD validators compiled and Helm's library loaded once, as in a running
        # `veil platform serve`; the cold start is what the veil-cli row measures
        (work / "warm").mkdir()
        shutil.copytree(work / "code", work / "warm" / "code")
        run(work / "warm", 1, pinned, sidecar)
        for times in CPU.values():
            times.clear()
        first_veil, first_hand, cli = [], [], []
        for r in range(args.rounds):
            base = work / f"one-{r}"
            base.mkdir()
            shutil.copytree(work / "code", base / "code")
            v, h = run(base, 1, pinned, sidecar)
            first_veil += v
            first_hand += h
            cli.append(cli_once(base, pinned, sidecar))
        first_cpu = {k: list(v) for k, v in CPU.items()}
        for times in CPU.values():
            times.clear()
        base = work / "many"
        base.mkdir()
        shutil.copytree(work / "code", base / "code")
        t = time.perf_counter()
        many_veil, many_hand = run(base, args.deployments, pinned, sidecar)
        wall = time.perf_counter() - t
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, times: list[float], base_times: list[float], total: float | None,
            cpu: list[float] | None = None) -> None:
        med, bmed = statistics.median(times), statistics.median(base_times)
        tot = f"{total:8.2f}" if total is not None else "       -"
        cpu_ms = f"{statistics.median(cpu) * 1000:8.1f}" if cpu else "       -"
        print(f"{name:<44} {med * 1000:9.1f} {cpu_ms} {tot} {med / bmed:7.2f}x")

    print(f"{'scenario / contender':<44} {'median ms':>9} {'cpu ms':>8} {'total s':>8} "
          f"{'ratio':>8}")
    row("one deployment: git-by-hand (baseline)", first_hand, first_hand, None,
        first_cpu["hand"])
    row("one deployment: veil-deploy", first_veil, first_hand, None, first_cpu["veil"])
    row("one deployment: veil-cli (new process)", cli, first_hand, None)
    n = args.deployments
    row(f"{n} deployments, one team: git-by-hand", many_hand, many_hand, sum(many_hand),
        CPU["hand"])
    row(f"{n} deployments, one team: veil-deploy", many_veil, many_hand, sum(many_veil),
        CPU["veil"])
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(wall-clock medians grow with it; cpu ms less so)")
    print(f"{n} deployments wall time (both contenders, incl. copying): {wall:.1f} s")
    print(f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MiB, largest child {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}"
          " MiB (git, veil-cli)")
    print(f"target: one deployment <= 1000 ms -> "
          f"{'met' if statistics.median(first_veil) <= 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
