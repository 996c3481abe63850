"""Real parts for deploy tests: images pushed to a real registry, GitOps repositories in real git.

Images are small but real: an OCI manifest, a config with Env and Labels and one layer, pushed
through the registry's API — what a build pushes, minus the bytes of a Python rootfs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from veil.image.reference import parse_reference
from veil.image.registry import OCI_MANIFEST, Registry

ROLE = "arn:aws:iam::123456789012:role/fraud-model"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


def push_image(ref: str, *, env: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, content: bytes = b"") -> str:
    """Push a one-layer image to `ref` (REGISTRY/REPO:TAG); return its manifest digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = content or ref.encode()
        info = tarfile.TarInfo("app/marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [f"{k}={v}" for k, v in (env or {}).items()],
                   "Labels": labels or {}, "WorkingDir": "/app"},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    r = parse_reference(ref)
    with Registry(r) as reg:
        layer_digest = reg.put_blob(layer)
        cfg_digest = reg.put_blob(cfg)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cfg_digest, "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer_digest, "size": len(layer)}],
        }
        return reg.put_manifest(r.tag or "latest", manifest, OCI_MANIFEST)


def git(cwd: Path, *args: str) -> str:
    import os

    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout


def gitops_repo(tmp: Path, teams: str = "teams:\n  - name: ml\n  - name: web\n",
                remote: bool = True) -> tuple[Path, Path | None]:
    """A GitOps working copy with teams.yaml committed, and its bare remote (pushed to)."""
    work = tmp / "gitops"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "ops@example.com")
    git(work, "config", "user.name", "ops")
    (work / "teams.yaml").write_text(teams)
    git(work, "add", "teams.yaml")
    git(work, "commit", "-q", "-m", "teams")
    bare = None
    if remote:
        bare = tmp / "remote.git"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(bare))
        git(work, "remote", "add", "origin", str(bare))
        git(work, "push", "-q", "origin", "main")
    return work, bare


def tree(repo: Path) -> dict[str, bytes]:
    """Every file of the working copy (without .git) and its bytes."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts}
