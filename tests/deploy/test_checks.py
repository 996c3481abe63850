"""The pre-deploy checks as a pure core: the in-memory registry fake, no git, Helm's engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from veil.deploy.checks import BuildRecord, predeploy
from veil.deploy.images import MemoryImages
from veil.deploy.load import load_deployment
from veil.deploy.model import Teams

pytest.importorskip("helm_python")

APP = "r.example.com/ml/fraud"
D1, D2, DS = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "5" * 64
ROLE = "arn:aws:iam::123456789012:role/fraud"


def _images() -> MemoryImages:
    images = MemoryImages()
    images.add(f"{APP}:1", D1, env={"VEIL_ENTRYPOINT": "m:p"},
               labels={"io.veil.platform.aws-role-arn": ROLE})
    images.add("r.example.com/infra/logship:2", DS)
    return images


def _check(tmp_path: Path, images: MemoryImages | None = None, **fields: Any) -> list[str]:
    doc = {"team": "ml", "app": "fraud-v1", "image": f"{APP}:1@{D1}",
           "chart": {"wrapper": "flask"}, **fields}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    teams = Teams.model_validate({"teams": [{"name": "ml", "clusters": ["in-cluster"]}]})
    report = predeploy(load_deployment(path), images or _images(), teams=teams,
                       existing={"apps": {"fraud-v0"}, "aliases": {"live"}})
    return [f"{p.severity}:{p.path}:{p.message}" for p in report.problems]


def test_a_good_deployment_passes(tmp_path: Path) -> None:
    problems = _check(tmp_path, cluster="in-cluster")
    assert [p for p in problems if p.startswith("error")] == []


def test_each_failure_is_named_where_it_is(tmp_path: Path) -> None:
    images = _images()
    images.add(f"{APP}:1", D2)  # the tag moved
    problems = _check(tmp_path, images, app="live", alias="fraud-v0",
                      sidecars=[{"name": "gone", "image": "r.example.com/x/y:9"}],
                      serviceAccount={"roleArn": "arn:aws:iam::123456789012:role/other"})
    errors = sorted(p.split(":", 2)[1] for p in problems if p.startswith("error"))
    assert errors == ["alias", "app", "cluster", "image", "sidecars[0].image"]
    text = "\n".join(problems)
    assert f"now points at {D2}, the build pushed {D1}" in text
    assert "may not deploy to this cluster" in text


def test_the_role_must_match_the_builds(tmp_path: Path) -> None:
    problems = _check(tmp_path, cluster="in-cluster",
                      serviceAccount={"roleArn": "arn:aws:iam::123456789012:role/other"})
    assert [p for p in problems if p.startswith("error")] == [
        "error:serviceAccount.roleArn:the deployment names another AWS role than the build "
        "was made for"]


def test_the_registry_is_asked_not_the_record(tmp_path: Path) -> None:
    """A build record saying D2 does not make the registry's D1 deployable."""

    class Records:
        def get(self, build_id: str) -> BuildRecord | None:
            return BuildRecord((f"{APP}:1@{D2}",), "succeeded", ROLE)

    doc = {"team": "ml", "app": "fraud-v1", "build": "b1", "chart": {"wrapper": "flask"},
           "cluster": "in-cluster"}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    report = predeploy(load_deployment(path), _images(), records=Records())
    assert [p.path for p in report.errors] == ["image"]
    assert "moved since the build" in report.errors[0].message
