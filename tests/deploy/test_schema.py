"""Argo CD objects against the CRD schemas, and the strict pass that is stricter than them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from veil.deploy import argo
from veil.deploy.schema import _crd_schema, validate_object


def _objects() -> dict[str, dict[str, Any]]:
    return {
        "app": argo.deployment_application(
            team="ml", app="fraud", repo_url="https://git.example.com/gitops.git",
            revision="main", chart_path="charts/veil-wrapper",
            values={"image": {"repository": "r.io/ml/fraud", "digest": "sha256:" + "a" * 64}},
            cluster="https://kubernetes.default.svc", image="r.io/ml/fraud:1@sha256:" + "a" * 64),
        "alias": argo.alias_application(team="ml", alias="fraud-live", target="fraud",
                                        repo_url="https://g/x.git", revision="main",
                                        cluster="prod"),
        "project": argo.app_project(team="ml", description="", repo_url="https://g/x.git",
                                    clusters=["https://kubernetes.default.svc", "prod"]),
        "namespace": argo.namespace_application(team="ml", repo_url="https://g/x.git",
                                                revision="main", path="teams/ml/namespace",
                                                cluster="prod"),
    }


@pytest.mark.parametrize("which", ["app", "alias", "project", "namespace"])
def test_generated_objects_pass_both_passes(which: str) -> None:
    assert validate_object(_objects()[which]) == []


@pytest.mark.parametrize(("path", "field"), [
    (("spec", "source", "helm"), "valueObject"),  # a typo Argo CD would silently ignore
    (("spec",), "sync"),
    (("spec", "destination"), "cluster"),
    (("spec", "syncPolicy", "automated"), "pruning"),
    ((), "extra"),
])
def test_a_field_the_schema_does_not_name_is_refused(path: tuple[str, ...], field: str) -> None:
    obj = copy.deepcopy(_objects()["app"])
    node = obj
    for p in path:
        node = node[p]
    node[field] = {"x": 1}
    # control: the CRD schema as Argo CD has it lets the field through
    assert list(Draft202012Validator(_crd_schema("Application")).iter_errors(obj)) == []
    problems = validate_object(obj)
    assert [p.path for p in problems] == [".".join([*path, field])]
    assert "not in Argo CD's schema" in problems[0].message
    assert problems[0].allowed  # names the fields that are allowed there


def test_free_form_values_stay_free() -> None:
    obj = _objects()["app"]
    obj["spec"]["source"]["helm"]["valuesObject"]["anything"] = {"deep": {"er": [1, {"x": 2}]}}
    assert validate_object(obj) == []


def test_project_restrictions_are_strict_too() -> None:
    obj = _objects()["project"]
    obj["spec"]["clusterResourceWhitelist"][0]["namespace"] = "x"
    assert [p.path for p in validate_object(obj)] == \
        ["spec.clusterResourceWhitelist[0].namespace"]


def test_schema_violations_and_identity_checks() -> None:
    obj = _objects()["app"]
    obj["spec"]["source"]["helm"]["skipCrds"] = "yes"
    obj["metadata"]["name"] = "ML_Fraud"
    obj["apiVersion"] = "argoproj.io/v1"
    paths = sorted(p.path for p in validate_object(obj))
    assert paths == ["apiVersion", "metadata.name", "spec.source.helm.skipCrds"]


def test_the_project_allows_only_its_own_namespace() -> None:
    spec = _objects()["project"]["spec"]
    assert {d["namespace"] for d in spec["destinations"]} == {"ml"}
    assert spec["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace", "name": "ml"}]
    assert spec["sourceRepos"] == ["https://g/x.git"]
