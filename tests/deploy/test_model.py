"""The deployment document: every problem at once, each with file:line:col, field and what is
allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.deploy.load import load_deployment, load_teams
from veil.errors import ManifestError

GOOD = """\
team: ml
app: fraud-v2
image: 127.0.0.1:5000/ml/fraud:1
chart: {wrapper: flask}
"""


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "deployment.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_deployment(path)
    return [p.render() for p in info.value.problems]


def test_a_good_deployment_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(GOOD)
    loaded = load_deployment(path)
    assert loaded.model.application == "ml--fraud-v2"
    assert loaded.model.cluster == "https://kubernetes.default.svc"
    assert loaded.base_dir == tmp_path


def test_every_problem_is_reported_with_line_field_and_allowed(tmp_path: Path) -> None:
    errors = _errors(tmp_path, """\
team: ML
app: fraud--v2
image: 127.0.0.1:5000/ml/Fraud:1
chart: {wrapper: flsk}
valuez: {}
values: {image: {repository: evil}}
env: {"1BAD": x}
serviceAccount: {roleArn: "arn:aws:iam::1:role/x"}
""")
    text = "\n".join(errors)
    assert len(errors) == 8, text
    assert "d.yaml" not in text and "deployment.yaml:1:7: error at team" in text
    assert "deployment.yaml:2:6: error at app: the app name may not hold '--'" in text
    assert "deployment.yaml:3:8: error at image" in text and "lower-case" in text
    assert "deployment.yaml:4:18: error at chart.wrapper" in text and "flask or kafka" in text
    assert "deployment.yaml:5:1: error at valuez: unknown field `valuez`" in text
    assert "values.image is set by Veil" in text
    assert "deployment.yaml:7:6: error at env" in text and "1BAD" in text
    assert "deployment.yaml:8:" in text and "serviceAccount.roleArn" in text


@pytest.mark.parametrize(("extra", "expected"), [
    ("alias: fraud-v2\n", "alias must differ"),
    ("sidecars: [{name: app, image: 127.0.0.1:5000/x/y:1}]\n", "not 'app'"),
    ("sidecars: [{name: a, image: 127.0.0.1:5000/x/y:1}, {name: a, image: r.io/x:1}]\n",
     "unique"),
])
def test_cross_field_rules(tmp_path: Path, extra: str, expected: str) -> None:
    assert any(expected in e for e in _errors(tmp_path, GOOD + extra))


@pytest.mark.parametrize("name", ["namespace", "project"])
def test_reserved_app_names(tmp_path: Path, name: str) -> None:
    assert any("reserved" in e for e in _errors(tmp_path, GOOD.replace("fraud-v2", name)))


def test_an_image_or_a_build_is_needed(tmp_path: Path) -> None:
    text = GOOD.replace("image: 127.0.0.1:5000/ml/fraud:1\n", "")
    assert any("name the image" in e for e in _errors(tmp_path, text))


def test_a_chart_is_the_wrapper_or_a_path_not_both(tmp_path: Path) -> None:
    text = GOOD.replace("{wrapper: flask}", "{wrapper: flask, path: ./chart}")
    assert any("exactly one of `wrapper`" in e for e in _errors(tmp_path, text))


def test_shell_variables_are_refused_in_image_references(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD.replace("fraud:1", "fraud:$TAG"))
    assert any("error at image" in e for e in errors)


def test_teams_file_missing_or_wrong_is_a_positioned_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no teams\.yaml"):
        load_teams(tmp_path)
    (tmp_path / "teams.yaml").write_text("teams:\n  - name: ml\n    colour: red\n")
    with pytest.raises(ManifestError) as info:
        load_teams(tmp_path)
    assert "teams.yaml:3:5: error at teams[0].colour: unknown field" in info.value.problems[0] \
        .render()
