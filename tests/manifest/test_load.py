"""Loading manifests: the seeds' own examples load; every kind of bad input is reported with
file:line:col, field path, the bad value and what is allowed — all of a document at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from veil.errors import ManifestError, UserError
from veil.manifest.load import load_document, load_genservice, load_mesh
from veil.manifest.models import GenService, GlobalEnvVar, Mesh, MeshEnvGroup

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "examples" / "seeds"
HELLO = ROOT / "examples" / "hello-user"

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: edge.scone-cas.cf
policy:
  namespace: ns
services:
  - name: app
    image: 127.0.0.1:5000/app:1
"""


def errors_of(text: str, name: str = "m.yaml") -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_document(name, text)
    return info.value


@pytest.mark.parametrize("path", [
    HELLO / "service.yaml",
    SEEDS / "genservice.yaml",
    *sorted((SEEDS / "services").glob("*.yaml")),
])
def test_seed_service_manifests_load(path: Path) -> None:
    doc = load_genservice(path)
    assert isinstance(doc.model, GenService)
    assert doc.model.build.to


def test_seed_mesh_loads_with_grouped_env() -> None:
    doc = load_mesh(SEEDS / "mesh.yaml")
    mesh = doc.model
    assert isinstance(mesh, Mesh)
    assert [s.name for s in mesh.services] == ["memcached", "nginx_scone", "maria_db"]
    assert all(isinstance(g, MeshEnvGroup) for g in mesh.env)
    assert mesh.repo is not None and mesh.repo.destination == "registry.scontain.com/repo"


def test_flat_env_and_scalar_values() -> None:
    text = MESH + "env:\n  - name: APP_SERVICE_PORT\n    value: 443\n  - name: X\n    value: true\n"
    mesh = load_mesh("m.yaml", text).model
    assert mesh.env == [GlobalEnvVar(name="APP_SERVICE_PORT", value="443"),
                        GlobalEnvVar(name="X", value="true")]


def test_wrong_api_version_names_it() -> None:
    err = errors_of(MESH.replace("scone/5.8", "scone/5.7"))
    [p] = err.problems
    assert (p.line, p.column, p.path, p.value) == (1, 13, "apiVersion", "scone/5.7")
    assert "5.8" in (p.allowed or "")


def test_unknown_kind() -> None:
    err = errors_of(MESH.replace("kind: mesh", "kind: meshy"))
    [p] = err.problems
    assert (p.line, p.path, p.value) == (2, "kind", "meshy")
    assert p.allowed == "genservice, mesh"


def test_all_errors_of_a_document_at_once() -> None:
    text = MESH.replace("    cas_url: edge.scone-cas.cf\n", "") \
        .replace("  namespace: ns", "  namespace: [1, 2]") \
        + "  - name: app\n    image: 127.0.0.1:5000/other:1\n    replicas: 3\n"
    err = errors_of(text)
    got = {(p.line, p.path) for p in err.problems}
    assert (4, "cas[0].cas_url") in got  # missing field: at the mapping that should hold it
    assert (7, "policy.namespace") in got  # wrong type
    assert (11, "services[1].name") in got  # duplicate name
    assert (13, "services[1].replicas") in got  # unknown field
    extra = next(p for p in err.problems if p.path == "services[1].replicas")
    assert extra.allowed == "name, image, image_secrets, env"
    dup = next(p for p in err.problems if p.path == "services[1].name")
    assert "line 9" in dup.message and dup.value == "app"


def test_undefined_secret_reference() -> None:
    text = (HELLO / "service.yaml").read_text().replace("$$SCONE::password$$",
                                                         "$$SCONE::passwd$$")
    err = errors_of(text, "service.yaml")
    [p] = err.problems
    assert p.path == "environment.local[2].value"
    assert p.line == 15 and p.value == "$$SCONE::passwd$$"
    assert p.allowed == "password"


def test_imported_secret_and_legacy_forms_are_accepted() -> None:
    doc = load_genservice(SEEDS / "genservice.yaml")
    assert doc.model.secrets.import_ == ["NGINX_SERVER_CA_CERT"]


def test_unknown_reference_format() -> None:
    text = (HELLO / "service.yaml").read_text().replace("$$SCONE::password$$",
                                                         "$$SCONE::password:weird$$")
    [p] = errors_of(text).problems
    assert "weird" in p.message and "crt" in (p.allowed or "")


def test_leftover_shell_variable_in_image_is_an_error_elsewhere_a_warning() -> None:
    text = MESH.replace("127.0.0.1:5000/app:1", "$APP_IMAGE_REPO/app:1") + \
        "env:\n  - name: A\n    value: \"$HOME is fine\"\n  - name: B\n    value: \"!#what!$#\"\n"
    err = errors_of(text)
    [p] = err.problems
    assert p.path == "services[0].image" and "envsubst" in p.message
    assert [w.path for w in err.warnings] == ["env[0].value"]


def test_undefined_template_syntax_error() -> None:
    text = MESH + "env:\n  - name: A\n    value: \"{{ x \"\n"
    [p] = errors_of(text).problems
    assert p.path == "env[0].value" and p.line == 14


@pytest.mark.parametrize("text,line,col", [
    ("apiVersion: scone/5.8\nkind: mesh\ncas: [\n", 4, 1),
    ("a: 1\n  b: 2\n", 2, 4),
    ("kind: mesh\nkind: mesh\n", 2, 1),
])
def test_unparseable_yaml_has_a_position(text: str, line: int, col: int) -> None:
    [p] = errors_of(text).problems
    assert p.message.startswith("invalid YAML")
    assert (p.line, p.column) == (line, col)


def test_not_a_mapping() -> None:
    [p] = errors_of("- 1\n- 2\n").problems
    assert "mapping" in p.message


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "nope.yaml"))):
        load_document(tmp_path / "nope.yaml")


def test_env_item_errors_name_the_shape_meant() -> None:
    text = MESH + "env:\n  - service: app\n    env:\n      - name: 3\n        valu: x\n"
    err = errors_of(text)
    paths = {p.path: p for p in err.problems}
    assert set(paths) == {"env[0].env[0].name", "env[0].env[0].valu"}
    assert paths["env[0].env[0].valu"].allowed == "name, value"


def test_env_group_for_unknown_service() -> None:
    text = MESH + "env:\n  - service: nosuch\n    env: []\n"
    [p] = errors_of(text).problems
    assert p.value == "nosuch" and p.allowed == "global, helm, app"
