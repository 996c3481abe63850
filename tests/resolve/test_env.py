"""Environment resolution: precedence, provenance, least privilege, missing variables."""

from __future__ import annotations

import pytest

from tests.resolve.helpers import description, index, mesh
from veil.errors import ManifestError
from veil.resolve.env import resolve_mesh

GROUPED = """\
env:
  - service: global
    env:
      - name: A
        value: from-global
      - name: B
        value: from-global
      - name: C
        value: from-global
  - service: helm
    env:
      - name: B
        value: from-helm
      - name: PORT
        value: 443
  - service: app
    env:
      - name: C
        value: from-service
"""


def test_precedence_and_origin() -> None:
    d = description("app", global_={"A": "default", "B": None, "C": None, "D": "default-d"},
                    local={"L": "fixed"})
    r = resolve_mesh(mesh([("app", "app")], GROUPED), index(d)).services["app"]
    values = {n: v.value for n, v in r.env.items()}
    assert values == {"A": "from-global", "B": "from-helm", "C": "from-service",
                      "D": "default-d", "L": "fixed", "PORT": "443"}
    assert r.env["A"].origin.level == "mesh global" and r.env["A"].origin.line == 15
    assert r.env["B"].origin.level == "mesh helm"
    assert r.env["C"].origin.level == "mesh service" and r.env["C"].origin.file == "mesh.yaml"
    assert r.env["D"].origin.level == "service default"
    assert r.env["L"].origin.level == "service local"


def test_program_gets_only_local_and_declared_global() -> None:
    d = description("app", global_={"A": None, "B": None, "C": None}, local={"L": "x"})
    r = resolve_mesh(mesh([("app", "app")], GROUPED), index(d)).services["app"]
    assert sorted(r.program_env) == ["A", "B", "C", "L"]
    assert "PORT" in r.env and "PORT" not in r.program_env


def test_later_entry_wins_within_a_level() -> None:
    env = ("env:\n  - service: global\n    env:\n      - name: A\n        value: one\n"
           "  - service: global\n    env:\n      - name: A\n        value: two\n")
    d = description("app", global_={"A": None})
    r = resolve_mesh(mesh([("app", "app")], env), index(d))
    assert r.services["app"].env["A"].value == "two"


def test_null_is_a_placeholder_not_a_definition() -> None:
    env = ("env:\n  - service: global\n    env:\n      - name: A\n        value: real\n"
           "  - service: global\n    env:\n      - name: A\n        value: null\n")
    d = description("app", global_={"A": None})
    r = resolve_mesh(mesh([("app", "app")], env), index(d))
    assert r.services["app"].env["A"].value == "real"


def test_local_cannot_be_overridden_by_the_service_entry() -> None:
    env = ("env:\n  - service: app\n    env:\n      - name: L\n        value: evil\n"
           "  - service: global\n    env:\n      - name: L\n        value: ignored\n")
    d = description("app", local={"L": "fixed"})
    with pytest.raises(ManifestError) as info:
        resolve_mesh(mesh([("app", "app")], env), index(d))
    [p] = info.value.problems
    assert p.path == "env[0].env[0]" and p.line == 15
    assert "local variable" in p.message and "image reg.example/app:1" in p.message


def test_global_entry_never_overrides_local() -> None:
    env = "env:\n  - name: L\n    value: ignored\n"
    d = description("app", local={"L": "fixed"})
    r = resolve_mesh(mesh([("app", "app")], env), index(d))
    assert r.services["app"].env["L"].value == "fixed"


def test_every_missing_variable_per_service() -> None:
    a = description("a", global_={"X": None, "Y": None, "Z": "z"})
    b = description("b", global_={"X": None, "W": None})
    with pytest.raises(ManifestError) as info:
        resolve_mesh(mesh([("a", "a"), ("b", "b")]), index(a, b))
    msgs = sorted(p.message for p in info.value.problems)
    assert len(msgs) == 2
    assert "`a`" in msgs[0] and "X, Y" in msgs[0]
    assert "`b`" in msgs[1] and "X, W" in msgs[1]


def test_missing_description() -> None:
    with pytest.raises(ManifestError) as info:
        resolve_mesh(mesh([("a", "a")]), {})
    [p] = info.value.problems
    assert p.path == "services[0].image" and "--dry-run" in (p.allowed or "")


def test_templates_from_env_and_mesh_facts() -> None:
    env = ("env:\n  - name: HOST\n    value: \"{{service_name}}.{{namespace}}\"\n"
           "  - name: URL\n"
           "    value: \"https://{{HOST}}:{{ PORT | default(value=\\\"8443\\\") }}\"\n"
           "  - name: CAS\n    value: \"{{cas_cas_cas_url}}\"\n")
    d = description("app", global_={"URL": None, "CAS": None},
                    files=[{"path": "/etc/x", "content": "url={{URL}} key=$$SCONE::s$$"}],
                    secrets=["s"])
    r = resolve_mesh(mesh([("app", "app")], env), index(d)).services["app"]
    assert r.program_env["URL"].value == "https://app.ns:8443"
    assert r.program_env["CAS"].value == "cas.example:8081"
    [f] = r.injection_files
    assert f.content == "url=https://app.ns:8443 key=$$SCONE::s$$"
    assert r.secret_refs == ("s",)


def test_undefined_template_variable_is_an_error() -> None:
    env = "env:\n  - name: A\n    value: \"x{{nope}}\"\n"
    d = description("app", global_={"A": None})
    with pytest.raises(ManifestError) as info:
        resolve_mesh(mesh([("app", "app")], env), index(d))
    [p] = info.value.problems
    assert "nope" in p.message and (p.line, p.column) == (14, 12)
    assert p.path == "env[0].value" and p.value == "x{{nope}}"


def test_template_cycle_is_an_error() -> None:
    env = ("env:\n  - name: A\n    value: \"{{B}}\"\n  - name: B\n    value: \"{{A}}\"\n")
    d = description("app", global_={"A": None, "B": None})
    with pytest.raises(ManifestError) as info:
        resolve_mesh(mesh([("app", "app")], env), index(d))
    assert any("cycle" in p.message for p in info.value.problems)


def test_mesh_value_referring_to_an_unknown_secret() -> None:
    env = "env:\n  - name: A\n    value: \"$$SCONE::other$$\"\n"
    d = description("app", global_={"A": None}, secrets=["mine"], imports=["ns2/theirs"])
    with pytest.raises(ManifestError) as info:
        resolve_mesh(mesh([("app", "app")], env), index(d))
    [p] = info.value.problems
    assert "other" in p.message and p.allowed == "mine, ns2/theirs, theirs"


def test_secret_references_stay_unresolved() -> None:
    d = description("app", local={"P": "$$SCONE::pw$$"}, secrets=["pw"])
    r = resolve_mesh(mesh([("app", "app")]), index(d)).services["app"]
    assert r.program_env["P"].value == "$$SCONE::pw$$"
    assert r.program_env["P"].secret_refs == ("pw",)
