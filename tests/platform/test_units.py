"""The pure pieces of a build: labels, FROM lines, masks, log limits, requirement files."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.platform.build import base_images, build, label_step, labels_for
from veil.platform.job import BuildFailed, Job, LogSink
from veil.platform.request import ContainerBuildRequest
from veil.platform.sources import _requirement_lines, declares_arg

SHA = "0123456789abcdef0123456789abcdef01234567"


def req(**args: str) -> ContainerBuildRequest:
    return ContainerBuildRequest.model_validate({
        "repository": "https://git.example.com/x.git", "git_branch": "main",
        "git_commit_sha": SHA, "image_name": "team/x", "dockerfile_path": "Dockerfile",
        "docker_context": ".", "namespace": "team", "image_tags": [],
        "injected_aws_role_arn": "", "injected_aws_account_short_alias": "alias",
        "registries": ["r.example.com", "r.example.com"], "build_args": args,
    })


def test_labels_name_plain_build_args_only() -> None:
    r = req(A="1", **{"secret:TOKEN": "s3cret"})
    labels = labels_for(r, r.plain_args())
    assert labels["io.veil.platform.build-arg.A"] == "1"
    assert "s3cret" not in str(labels) and not any("TOKEN" in k for k in labels)
    assert "io.veil.platform.aws-role-arn" not in labels  # empty: no label
    assert labels["io.veil.platform.aws-account-alias"] == "alias"
    assert r.tags == [SHA]  # no tags given: the commit
    assert r.image_refs() == {"r.example.com": [f"r.example.com/team/x:{SHA}"]}


def test_base_images_apply_build_args_and_defaults() -> None:
    text = ("ARG BASE=127.0.0.1:5000/py:1\nFROM ${BASE} AS build\nFROM build\n"
            "FROM $OTHER\nFROM scratch\n")
    assert base_images(text, {"OTHER": "localhost:5000/o:2"}) == [
        "127.0.0.1:5000/py:1", "localhost:5000/o:2"]
    assert base_images(text, {"BASE": "docker.io/library/python:3"})[0] == \
        "docker.io/library/python:3"
    assert declares_arg("FROM x\nARG PIP_FIND_LINKS=\n", "PIP_FIND_LINKS")
    assert not declares_arg("FROM x\n# ARG PIP_FIND_LINKS\n", "PIP_FIND_LINKS")


def test_secrets_are_masked_longest_first() -> None:
    written: list[str] = []
    job = Job("b", LogSink(lambda _s, t: written.append(t)), {"A": "abc", "B": "abcdef"}, 60)
    job.log("value abcdef and abc")
    job.sink.flush()
    assert written == ["value [secret B] and [secret A]\n"]


def test_the_log_is_capped() -> None:
    written: list[str] = []
    sink = LogSink(lambda _s, t: written.append(t), limit=100)
    for i in range(50):
        sink.add(f"line {i:03d}")
    sink.flush()
    text = "".join(written)
    assert len(text) < 200 and text.endswith("the rest is dropped]\n")


@pytest.mark.parametrize("line", ["-r /etc/shadow", "--index-url http://evil/", "-e .",
                                  "pkg @ https://evil/x.whl", "git+https://evil/x.git",
                                  "--find-links /", "./local"])
def test_requirement_files_may_only_name_requirements(tmp_path: Path, line: str) -> None:
    (tmp_path / "requirements.txt").write_text(f"flask>=3\n{line}\n")
    with pytest.raises(BuildFailed, match=r"requirements.txt:2: only requirement specifiers"):
        _requirement_lines(tmp_path)


def test_requirement_lines_of_the_context(tmp_path: Path) -> None:
    (tmp_path / "runner").mkdir()
    (tmp_path / "runner" / "requirements-flask.txt").write_text("flask>=3.0  # web\n")
    (tmp_path / "requirements.txt").write_text("# none\nnumpy[extra]==1.26; python_version>'3'\n")
    assert sorted(_requirement_lines(tmp_path)) == [
        "flask>=3.0", "numpy[extra]==1.26; python_version>'3'"]


def test_labels_go_in_one_step_unless_the_dockerfile_forbids() -> None:
    line, rest = label_step("FROM x\n", {"a": 'q"$HOME\\', "b": "two\nlines"})
    assert line == 'LABEL "a"="q\\"\\$HOME\\\\"' and rest == {"b": "two\nlines"}
    assert label_step("# escape=`\nFROM x\n", {"a": "1"}) == (None, {"a": "1"})
    assert label_step("FROM x\nRUN true \\\n", {"a": "1"}) == (None, {"a": "1"})


def _flaky(tmp_path: Path, fails: int, message: str) -> list[str]:
    """A command that fails `fails` times with `message`, then succeeds; counts its runs."""
    count = tmp_path / "runs"
    script = (f'n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; '
              f'if [ $n -le {fails} ]; then echo "Error: {message}"; exit 1; fi; echo built')
    return ["sh", "-c", script]


def _runs(tmp_path: Path) -> int:
    return int((tmp_path / "runs").read_text())


@pytest.mark.parametrize("fails, runs", [(1, 2), (2, 3)])
def test_a_build_hit_by_the_storage_race_runs_again(tmp_path: Path, fails: int, runs: int) -> None:
    written: list[str] = []
    job = Job("b", LogSink(lambda _s, t: written.append(t), every=0), {}, 60)
    msg = "checking if cached image exists: getting top layer info: layer not known"
    build(job, _flaky(tmp_path, fails, msg), what="building failed", cwd=tmp_path)
    job.sink.flush()
    assert _runs(tmp_path) == runs
    assert "building again" in "".join(written)


def test_the_storage_race_is_retried_three_times_at_most(tmp_path: Path) -> None:
    job = Job("b", LogSink(lambda _s, _t: None), {}, 60)
    with pytest.raises(BuildFailed, match="layer not known"):
        build(job, _flaky(tmp_path, 5, "layer not known"), what="building failed", cwd=tmp_path)
    assert _runs(tmp_path) == 3


def test_any_other_build_failure_is_not_retried(tmp_path: Path) -> None:
    job = Job("b", LogSink(lambda _s, _t: None), {}, 60)
    with pytest.raises(BuildFailed, match="no such file"):
        build(job, _flaky(tmp_path, 5, "COPY app.py: no such file"), what="building failed",
              cwd=tmp_path)
    assert _runs(tmp_path) == 1
