"""Golden files of `veil deploy`: the Argo CD objects and the commit message, byte for byte.

Each case under deploy/ holds deployment.yaml (and what it names) and expected/ (the files the
deployment writes under teams/, and commit-message.txt). The registry is the in-memory fake
(fixed digests); git and Helm's engine are real. VEIL_UPDATE_GOLDEN=1 rewrites expected/.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from veil.deploy.apply import deploy
from veil.deploy.gitops import GitOpsRepo
from veil.deploy.images import MemoryImages
from veil.deploy.load import load_deployment

pytest.importorskip("helm_python")

CASES = Path(__file__).parent / "deploy"
ROLE = "arn:aws:iam::123456789012:role/fraud-model"


def _images() -> MemoryImages:
    images = MemoryImages()
    images.add("registry.example.com/ml/fraud:1.2", "sha256:" + "1" * 64,
               env={"VEIL_ENTRYPOINT": "model:predict", "LOG_LEVEL": "INFO"},
               labels={"io.veil.platform.aws-role-arn": ROLE})
    images.add("registry.example.com/infra/logship:2", "sha256:" + "2" * 64)
    return images


def _repo(tmp: Path) -> Path:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ops", "GIT_AUTHOR_EMAIL": "ops@example.com",
           "GIT_COMMITTER_NAME": "ops", "GIT_COMMITTER_EMAIL": "ops@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "teams.yaml"],
                 ["commit", "-q", "-m", "teams"]):
        if args[0] == "add":
            (tmp / "teams.yaml").write_text("teams:\n  - name: ml\n    description: Fraud models\n")
        subprocess.run(["git", *args], cwd=tmp, env=env, check=True)
    return tmp


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden(case: str, tmp_path: Path) -> None:
    d = CASES / case
    repo = _repo(tmp_path)
    done = deploy(load_deployment(d / "deployment.yaml"), GitOpsRepo(repo), _images(),
                  repo_url="https://git.example.com/platform/gitops.git")
    assert done.commit is not None
    got = {str(p.relative_to(repo)): p.read_text() for p in sorted(repo.rglob("teams/**/*"))
           if p.is_file()}
    got["commit-message.txt"] = done.commit.message
    expected_dir = d / "expected"
    if os.environ.get("VEIL_UPDATE_GOLDEN") == "1":
        for rel, text in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_text(text)
    expected = {str(p.relative_to(expected_dir)): p.read_text()
                for p in sorted(expected_dir.rglob("*")) if p.is_file()}
    assert got == expected
