"""Image references in manifests: a bad one is reported at its line, saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ManifestError, UserError
from veil.image.reference import parse_reference
from veil.manifest.imageref import reference_problem
from veil.manifest.load import load_document

SERVICE = """\
apiVersion: scone/5.8
kind: genservice
build:
  name: demo
  kind: python
  to: {to}
  command: python3 app.py
"""


@pytest.mark.parametrize(("ref", "why"), [
    ("127.0.0.1:5000/veil/App:1", "lower-case"),
    ("127.0.0.1:5000/veil/my app:1", "no spaces"),
    ("python:3.11", "registry is missing"),
    ("app", "registry is missing"),
    ("UPPER/x", "registry is missing"),
    ("library/python:3.11", "registry is missing"),
    ("reg.example/app:-bad", "the tag"),
    ("reg.example/app@sha256:xyz", "digest"),
    ("reg.example/a//b:1", "single . _ - /"),
])
def test_what_is_wrong_is_said(ref: str, why: str) -> None:
    problem = reference_problem(ref)
    assert problem is not None and why in problem


@pytest.mark.parametrize("ref", [
    "127.0.0.1:5000/veil/app:1", "reg.example/a/b", "localhost/x:latest", "registry:5000/a:1",
    "[::1]:5000/a/b:2",
    "reg.example:443/a_b-c.d/e@sha256:" + "a" * 64,
])
def test_valid_references(ref: str) -> None:
    assert reference_problem(ref) is None
    assert parse_reference(ref).name.startswith(ref.split("/")[0])


def test_manifest_names_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "service.yaml"
    f.write_text(SERVICE.format(to="127.0.0.1:5000/veil/Hello:1"))
    with pytest.raises(ManifestError) as info:
        load_document(f)
    [p] = info.value.problems
    assert (p.path, p.line, p.file) == ("build.to", 6, str(f))
    assert "lower-case" in p.message and p.allowed and "REGISTRY" in p.allowed


def test_mesh_service_images(tmp_path: Path) -> None:
    f = tmp_path / "mesh.yaml"
    f.write_text("apiVersion: scone/5.8\nkind: mesh\ncas:\n  - name: cas\n    alias: [security]\n"
                 "    cas_url: cas.example:8081\npolicy:\n  namespace: ns\nservices:\n"
                 "  - name: a\n    image: reg.example/ok:1\n  - name: b\n    image: My Image\n")
    with pytest.raises(ManifestError) as info:
        load_document(f)
    assert [(p.path, p.line) for p in info.value.problems] == [("services[1].image", 13)]


def test_parse_reference_says_why() -> None:
    with pytest.raises(UserError, match="lower-case"):
        parse_reference("127.0.0.1:5000/UP/x:1")


@pytest.mark.parametrize("name", ["../../escaped", "/etc", "a b", ".", "..", "a/b", ""])
def test_build_name_stays_one_folder_below_the_target(tmp_path: Path, name: str) -> None:
    f = tmp_path / "service.yaml"
    f.write_text(SERVICE.format(to="reg.example/a:1").replace("name: demo", f"name: '{name}'"))
    with pytest.raises(ManifestError) as info:
        load_document(f)
    [p] = info.value.problems
    assert (p.path, p.line) == ("build.name", 4)
    assert any(w in (p.allowed or "") for w in ("letters, digits", "non-empty"))
