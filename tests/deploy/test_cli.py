"""`veil deploy`, `veil deploy history|rollback` and `veil check predeploy` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.support import git
from tests.deploy.world import World, make_world
from veil.cli import main

pytestmark = pytest.mark.integration
pytest.importorskip("helm_python")


@pytest.fixture
def world(tmp_path: Path, registry: str, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("COLUMNS", "200")
    return make_world(tmp_path, registry)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_deploy_then_unchanged_then_history_and_rollback(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    ref1, d1 = world.image("1")
    ref2, d2 = world.image("2")
    path = world.deployment(image=f"{ref1}@{d1}", code=world.code())
    code, out, err = run(capsys, "deploy", "-f", str(path), "--gitops", str(world.repo))
    assert code == 0, err
    sha = git(world.repo, "rev-parse", "HEAD").strip()
    assert out.startswith(f"{sha[:12]} deploy ml/fraud-v1: image {ref1}@{d1} (")
    assert "pushed to origin/main" in out
    assert "THRESHOLD is supplied by no phase" in err  # a warning, not a failure

    code, out, _ = run(capsys, "deploy", "-f", str(path), "--gitops", str(world.repo))
    assert (code, out.strip()) == (0, "ml--fraud-v1: unchanged (the repository already holds "
                                      "this deployment)")

    path2 = world.deployment(image=f"{ref2}@{d2}", code=world.code())
    assert run(capsys, "deploy", "-f", str(path2), "--gitops", str(world.repo))[0] == 0
    code, out, _ = run(capsys, "deploy", "history", "fraud-v1", "--gitops", str(world.repo))
    assert code == 0
    assert out.index(d2) < out.index(d1)  # newest first

    code, out, err = run(capsys, "deploy", "rollback", "fraud-v1", "--gitops", str(world.repo))
    assert code == 0, err
    assert f"rollback ml/fraud-v1: image {ref1}@{d1}" in out


def test_check_predeploy_table_and_json(world: World, capsys: pytest.CaptureFixture[str]) -> \
        None:
    ref, d = world.image("1")
    path = world.deployment(image=f"{ref}@{d}", code=world.code())
    before = world.snapshot()
    code, out, err = run(capsys, "check", "predeploy", "-f", str(path))
    assert code == 0, err
    assert f"pulls {ref.rsplit(':', 1)[0]}@{d}" in out
    assert "every pre-deploy check passed" in out
    row = next(line for line in out.splitlines() if "MODEL_URL" in line)
    assert "model.py:2" in row and row.count("yes") == 1  # supplied at deploy only

    code, out, _ = run(capsys, "check", "predeploy", "-f", str(path), "-o", "json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert report["image"]["pulled"] == f"{ref.rsplit(':', 1)[0]}@{d}"
    env = {r["name"]: r for r in report["env"]}
    assert env["MODEL_URL"]["phases"] == ["deploy"]
    assert env["VEIL_ENTRYPOINT"]["phases"] == ["build"]
    assert env["THRESHOLD"]["status"] == "default"
    assert world.snapshot() == before  # a check writes nothing


def test_failed_checks_exit_2_with_every_problem(world: World,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ref, d = world.image("1")
    path = world.deployment(team="nobody", image=f"{ref}@{d}", code=world.code(), env={})
    code, out, _ = run(capsys, "check", "predeploy", "-f", str(path), "-o", "json",
                       "--gitops", str(world.repo))
    report = json.loads(out)
    assert code == 2 and report["ok"] is False
    assert {e["path"] for e in report["errors"]} == {"team", "env"}

    before = world.snapshot()
    code, out, err = run(capsys, "deploy", "-f", str(path), "--gitops", str(world.repo))
    assert code == 2
    assert "2 pre-deploy checks failed" in err and "nothing was written" in err
    assert "deployment.yaml:1:7: error at team: unknown team" in err
    assert "MODEL_URL" in err and "Traceback" not in err
    assert world.snapshot() == before


def test_usage_errors(world: World, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEIL_GITOPS", raising=False)
    path = world.deployment(image=f"{world.registry}/x/y:1")
    code, _, err = run(capsys, "deploy", "-f", str(path))
    assert code == 2 and "no GitOps repository named" in err
    code, _, err = run(capsys, "deploy")
    assert code == 2 and "veil deploy -f deployment.yaml" in err
    code, _, err = run(capsys, "deploy", "-f", str(path), "--gitops", str(world.tmp))
    assert code == 2 and "is not a git repository" in err


def test_environment_values_are_never_printed(world: World,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    value, built = "s3://bucket-7f3a9c/model", "built-in-41d2"
    ref, d = world.image("1", env={"VEIL_ENTRYPOINT": "model:predict", "MODEL_URL": built,
                                   "API_TOKEN": "tok-9b8e"})
    path = world.deployment(image=f"{ref}@{d}", code=world.code(),
                            env={"MODEL_URL": value, "DB_PASSWORD": "pw-5521"})
    outputs = []
    for args in (["check", "predeploy", "-f", str(path)],
                 ["check", "predeploy", "-f", str(path), "-o", "json"],
                 ["deploy", "-f", str(path), "--gitops", str(world.repo)]):
        code, out, err = run(capsys, *args)
        assert code == 0, err
        outputs.append(out + err)
    text = "\n".join(outputs) + git(world.repo, "log", "-1", "--format=%B")
    assert "MODEL_URL: set at build (image) and at deploy with different values" in text
    assert "DB_PASSWORD looks like a credential" in text
    for secret in (value, built, "tok-9b8e", "pw-5521"):
        assert secret not in text


def test_the_platforms_own_injected_variables_come_from_teams_yaml(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    (world.repo / "teams.yaml").write_text(
        "teams:\n  - name: ml\nplatformEnv:\n  DD_AGENT_HOST: the Datadog admission webhook\n")
    git(world.repo, "commit", "-qam", "platform env")
    ref, d = world.image("1")
    path = world.deployment(image=f"{ref}@{d}", code=world.code(
        "import os\nos.environ['MODEL_URL']\nos.environ['DD_AGENT_HOST']\n"))
    code, out, _ = run(capsys, "check", "predeploy", "-f", str(path), "-o", "json")
    assert code == 2  # without the GitOps repository, nobody supplies it
    assert [e["message"].split()[0] for e in json.loads(out)["errors"]] == ["DD_AGENT_HOST"]
    code, out, _ = run(capsys, "check", "predeploy", "-f", str(path), "-o", "json",
                       "--gitops", str(world.repo))
    env = {r["name"]: r for r in json.loads(out)["env"]}
    assert code == 0 and env["DD_AGENT_HOST"]["phases"] == ["platform"]
