"""Manifest fields that published sconectl projects use: accepted and carried, or refused
with file:line and what is allowed — never dropped silently."""

from __future__ import annotations

import pytest

from tests.resolve.helpers import description, index, mesh
from veil.errors import ManifestError
from veil.manifest.description import ServiceDescription
from veil.manifest.load import load_document
from veil.resolve.env import resolve_mesh

SERVICE = """\
apiVersion: scone/5.8
kind: genservice
build:
  name: app
  to: reg.example/app:1
  command: python3 app.py
"""

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: cas.example:8081
policy:
  namespace: ns
services:
  - name: app
    image: reg.example/app:1
"""


def problems(text: str, file: str = "m.yaml") -> list[str]:
    with pytest.raises(ManifestError) as err:
        load_document(file, text)
    return [p.render() for p in err.value.problems]


# --- genservice ------------------------------------------------------------------------------

def test_legacy_top_level_requirements_is_build_requirements_with_a_warning() -> None:
    doc = load_document("s.yaml", SERVICE + "requirements: requirements.txt\n")
    assert doc.model.build.requirements == "requirements.txt"
    assert [w.render() for w in doc.warnings] == [
        "s.yaml:7:1: warning at requirements: a top-level `requirements` is deprecated; it is "
        "used as build.requirements — move it there"]
    # the manifest's digest is that of the build.requirements form
    moved = load_document("s.yaml", SERVICE + "  requirements: requirements.txt\n")
    assert (ServiceDescription.from_genservice(doc.model).manifest_digest
            == ServiceDescription.from_genservice(moved.model).manifest_digest)


def test_legacy_requirements_contradicting_build_requirements() -> None:
    text = SERVICE + "  requirements: a.txt\nrequirements: b.txt\n"
    [p] = problems(text, "s.yaml")
    assert "requirements: b.txt (top level, deprecated) and build.requirements: a.txt name " \
        "different files" in p


@pytest.mark.parametrize("kind", ["java", "java17", "java8-glibc", "java21-ubuntu", "python"])
def test_build_kinds_of_sconectl_load(kind: str) -> None:
    doc = load_document("s.yaml", SERVICE.replace("  to:", f"  kind: {kind}\n  to:"))
    assert doc.model.build.kind == kind


def test_unknown_build_kind_names_the_allowed_ones() -> None:
    [p] = problems(SERVICE.replace("  to:", "  kind: rust\n  to:"), "s.yaml")
    assert p.startswith("s.yaml:5:9: error at build.kind: value not allowed (got 'rust'); "
                        "allowed: python, java, ")
    assert "java17-ubuntu" in p


@pytest.mark.parametrize(("field", "paths"), [
    ("host_paths:\n    - /etc/ssl/certs\n    - /usr/share/ca-certificates/",
     ["/etc/ssl/certs", "/usr/share/ca-certificates"]),
    ("host_path:\n    - /etc/ssl/certs", ["/etc/ssl/certs"]),  # the java tutorial's spelling
    ("host_paths: /etc/pki", ["/etc/pki"]),
])
def test_host_paths_recorded(field: str, paths: list[str]) -> None:
    doc = load_document("s.yaml", SERVICE + "  " + field + "\n")
    assert doc.model.build.host_paths == paths
    assert ServiceDescription.from_genservice(doc.model).host_paths == paths


@pytest.mark.parametrize(("value", "why"), [
    ("etc/ssl", "must be an absolute path"),
    ("/etc/../opt/veil", "without . or .."),
    ("/opt/veil", "would replace part of the image itself"),
    ("/", "would replace part of the image itself"),
    ("/usr", "would replace part of the image itself"),
])
def test_host_paths_that_cannot_be(value: str, why: str) -> None:
    [p] = problems(SERVICE + f"  host_paths: [{value}]\n", "s.yaml")
    assert "build.host_paths" in p and why in p


def test_host_path_over_the_program_is_refused() -> None:
    [p] = problems(SERVICE + "  pwd: /app\n  host_paths: [/app/conf]\n", "s.yaml")
    assert "host path /app/conf overlaps build.pwd /app" in p


def test_stable_is_an_image_reference() -> None:
    doc = load_document("s.yaml", SERVICE + "  stable: reg.example/app:0\n")
    assert doc.model.build.stable == "reg.example/app:0"
    [p] = problems(SERVICE + "  stable: $IMAGE_V1\n", "s.yaml")
    assert "unexpanded shell variable $IMAGE_V1; did you run envsubst?" in p
    [p] = problems(SERVICE + "  stable: Reg/App\n", "s.yaml")
    assert "build.stable: not an image reference" in p


# --- mesh ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["EncryptedManifest", "SignedManifest"])
def test_cas_mode_veil_honours_says_how(mode: str) -> None:
    text = MESH.replace("    cas_url:", f"    mode: {mode}\n    cas_encryption_key: abc\n"
                        "    cas_url:")
    doc = load_document("m.yaml", text)
    assert doc.model.cas[0].mode == mode and doc.model.cas[0].cas_encryption_key == "abc"
    [w] = doc.warnings
    assert w.render().startswith(f"m.yaml:6:11: warning at cas[0].mode: mode {mode}: ")


def test_cas_mode_sign_online_is_refused() -> None:
    [p] = problems(MESH.replace("    cas_url:", "    mode: SignOnline\n    cas_url:"))
    assert p == ("m.yaml:6:11: error at cas[0].mode: mode SignOnline is not supported: Veil "
                 "has no signing service; use mode SignedManifest (or none): sessions are "
                 "authenticated by the client key `veil cas init` made (got 'SignOnline'); "
                 "allowed: EncryptedManifest, SignedManifest, or no mode")


def test_cas_mode_unknown() -> None:
    [p] = problems(MESH.replace("    cas_url:", "    mode: Plain\n    cas_url:"))
    assert p == ("m.yaml:6:11: error at cas[0].mode: value not allowed (got 'Plain'); "
                 "allowed: EncryptedManifest, SignedManifest or SignOnline")


@pytest.mark.parametrize(("policy", "tolerated", "ignored"), [
    ("tolerate: debug-mode,outdated-tcb , hyperthreading",
     ["debug-mode", "hyperthreading", "outdated-tcb"], []),
    ("tolerate: [outdated-tcb, outdated-tcb]", ["outdated-tcb"], []),
    ('ignore_advisories: "*"', [], ["*"]),
    ("ignore_advisories: INTEL-SA-00334,INTEL-SA-00615", [],
     ["INTEL-SA-00334", "INTEL-SA-00615"]),
    ("ignore_advisories: [INTEL-SA-00615, '*']", [], ["*"]),
])
def test_policy_tolerate_and_ignore_advisories(policy: str, tolerated: list[str],
                                               ignored: list[str]) -> None:
    doc = load_document("m.yaml", MESH.replace("  namespace: ns\n",
                                               f"  namespace: ns\n  {policy}\n"))
    assert doc.model.policy.tolerated == tolerated
    assert doc.model.policy.ignored_advisories == ignored


# --- resolution ------------------------------------------------------------------------------

GLOBAL_REF = """\
env:
  - service: global
    env:
      - name: DB_PASSWORD
        value: $$SCONE::db_password$$
"""


def test_a_global_secret_reference_is_checked_only_where_declared() -> None:
    db = description("db", global_={"DB_PASSWORD": None}, secrets=["db_password"])
    web = description("web", global_={"GREETING": "hi"})  # does not declare DB_PASSWORD
    m = mesh([("db", "db"), ("web", "web")], GLOBAL_REF)
    r = resolve_mesh(m, index(db, web))
    assert r.services["db"].program_env["DB_PASSWORD"].secret_refs == ("db_password",)
    assert "DB_PASSWORD" not in r.services["web"].program_env
    assert r.services["web"].secret_refs == ()


def test_a_service_that_declares_the_variable_must_know_the_secret() -> None:
    db = description("db", global_={"DB_PASSWORD": None})  # no such secret
    with pytest.raises(ManifestError) as err:
        resolve_mesh(mesh([("db", "db")], GLOBAL_REF), index(db))
    [p] = err.value.problems
    assert "`DB_PASSWORD` refers to secret `db_password`, which service `db` neither " \
        "defines nor imports" in p.render()


MULTILINE = """\
env:
  - service: global
    env:
      - name: BLOCK
        value: |
          line one
          line two: with a colon
      - name: WORKAROUND
        value: |
          |
          -----BEGIN CERTIFICATE-----
          MIIB
          -----END CERTIFICATE-----
      - name: QUOTED
        value: "|\\nfirst\\n  indented\\n"
      - name: PIPE
        value: "a | b"
"""


def test_multi_line_values_reach_the_program_intact() -> None:
    d = description("app", global_={"BLOCK": None, "WORKAROUND": None, "QUOTED": None,
                                    "PIPE": None})
    env = resolve_mesh(mesh([("app", "app")], MULTILINE), index(d)).services["app"].program_env
    assert env["BLOCK"].value == "line one\nline two: with a colon\n"
    assert env["WORKAROUND"].value == ("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                       "-----END CERTIFICATE-----\n")
    assert env["QUOTED"].value == "first\n  indented\n"
    assert env["PIPE"].value == "a | b"


def test_stable_measurement_is_accepted_beside_the_new_one_in_the_session() -> None:
    """sconectl's rolling update: the session of a service built with `build.stable` accepts
    the measurement of the image deployed now and of the new one; without it, only the new."""
    from veil.manifest.description import StableImage
    from veil.policy.compile import compile_mesh

    new, old = "a" * 64, "b" * 64
    d = description("app", global_={"API_USER": "me"}).model_copy(update={"measurement": new})
    rolling = d.model_copy(update={"stable": StableImage(image="reg.example/app:0",
                                                          measurement=old)})
    for desc, expected in ((rolling, [new, old]), (d, [new])):
        m = mesh([("app", "app")])
        sessions = compile_mesh(m.model, resolve_mesh(m, index(desc)), "debug")
        [doc] = [c.document for c in sessions if c.name == "app"]
        assert doc.services[0].attestation.measurement == expected
