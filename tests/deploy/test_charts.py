"""Veil's wrapper and alias charts with Helm's engine: strict lint, render, and every rendered
object through kubernetes-validate --strict."""

from __future__ import annotations

from typing import Any

import pytest

from veil.deploy.render import (
    ALIAS_CHART,
    WRAPPER_CHART,
    bundled_chart,
    pulled_images,
    render_chart,
)
from veil.errors import UserError

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

DIGEST = "sha256:" + "a" * 64
SIDECAR = "127.0.0.1:5000/infra/logship@sha256:" + "b" * 64
ROLE = "arn:aws:iam::123456789012:role/fraud"


def _values(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "image": {"repository": "127.0.0.1:5000/ml/fraud", "tag": "1", "digest": DIGEST},
        "env": {"MODEL_URL": "s3://bucket/model", "QUOTED": "a: 'b'"},
        "sidecars": [{"name": "logship", "image": SIDECAR, "env": {"A": "1"}, "args": ["-v"]}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE}},
        "veil": {"team": "ml", "app": "fraud"},
        "replicaCount": 2,
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
    }


def _validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


@pytest.mark.parametrize("kind", ["flask", "kafka"])
def test_wrapper_chart_lints_renders_and_validates(kind: str) -> None:
    chart = bundled_chart(WRAPPER_CHART)
    lint = helm_python.lint(str(chart), _values(kind), strict=True, with_subcharts=True)
    assert lint["errors"] == [], lint
    objects = render_chart(chart, _values(kind), release="fraud", namespace="ml")
    _validate(objects)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == (["Deployment", "Service", "ServiceAccount"] if kind == "flask"
                     else ["Deployment", "ServiceAccount"])
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pulled_images(objects) == [
        ("Deployment/fraud", "app", f"127.0.0.1:5000/ml/fraud@{DIGEST}"),
        ("Deployment/fraud", "logship", SIDECAR),
    ]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MODEL_URL"] == "s3://bucket/model" and env["QUOTED"] == "a: 'b'"
    assert {"POD_NAME", "POD_NAMESPACE", "VEIL_APP", "VEIL_TEAM"} <= set(env)
    has_probe = "readinessProbe" in pod["containers"][0]
    assert has_probe == (kind == "flask")


def test_alias_chart_points_a_stable_service_at_the_target_release() -> None:
    chart = bundled_chart(ALIAS_CHART)
    assert helm_python.lint(str(chart), {"target": "fraud-v2"}, strict=True)["errors"] == []
    objects = render_chart(chart, {"target": "fraud-v2"}, release="fraud", namespace="ml")
    _validate(objects)
    (svc,) = objects
    assert svc["metadata"]["name"] == "fraud"
    assert svc["spec"]["selector"] == {"app.kubernetes.io/instance": "fraud-v2"}


@pytest.mark.parametrize(("change", "expected"), [
    ({"bogus": 1}, "additional properties 'bogus'"),
    ({"image": {"repository": "r.io/x", "digest": "latest"}}, "image/digest"),
    ({"sidecars": [{"name": "s", "image": "r.io/x:1"}]}, "sidecars"),
])
def test_the_chart_refuses_values_it_does_not_know(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserError, match="does not render") as info:
        render_chart(bundled_chart(WRAPPER_CHART), {**_values("flask"), **change},
                     release="fraud", namespace="ml")
    assert expected in info.value.message
