"""The policy compiler: golden sessions for the seed mesh and a three-service mesh, and the
rules they rest on (least privilege, one value per global secret, modes, tolerances)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.mesh.support import GOLDEN, case
from veil.errors import ManifestError
from veil.mesh.apply import write_policies
from veil.mesh.descriptions import descriptions_for
from veil.mesh.extras import extra_policies, image_secrets
from veil.policy.compile import GLOBAL_SESSION, CompiledSession, compile_mesh
from veil.resolve.env import resolve_mesh
from veil.session.load import session_from_data
from veil.session.model import Release, SessionDoc, content_hash, session_hash


def compiled(name: str, mode: str = "production",
             release: Release | None = None) -> list[CompiledSession]:
    doc, lookup = case(name)
    found = descriptions_for(doc, lookup)
    resolved = resolve_mesh(doc, {i: f.description for i, f in found.items()})
    return compile_mesh(doc.model, resolved, mode,  # type: ignore[arg-type]
                        file=doc.file, image_secrets=image_secrets(doc),
                        extra_policies=extra_policies(doc), release=release)


@pytest.mark.parametrize("name", ["seed", "three-services"])
def test_golden_policies(name: str, tmp_path: Path) -> None:
    sessions = compiled(name)
    write_policies(tmp_path, sessions)
    expected = GOLDEN / name / "expected" / "policies"
    if os.environ.get("VEIL_UPDATE_GOLDEN") == "1":
        expected.mkdir(parents=True, exist_ok=True)
        for old in expected.glob("*.json"):
            old.unlink()
        for f in (tmp_path / "policies").iterdir():
            (expected / f.name).write_text(f.read_text())
    got = {f.name: f.read_text() for f in (tmp_path / "policies").iterdir()}
    assert got == {f.name: f.read_text() for f in expected.iterdir()}
    for c in sessions:  # every derived document is one CAS accepts
        session_from_data(c.document.model_dump(mode="json", by_alias=True, exclude_none=True))


def by_name(sessions: list[CompiledSession]) -> dict[str, CompiledSession]:
    return {c.name: c for c in sessions}


def test_global_secret_is_one_value_in_the_shared_session() -> None:
    s = by_name(compiled("three-services"))
    shared = s[GLOBAL_SESSION].document
    pw = shared.secret("db_password")
    assert pw is not None and pw.kind == "ascii" and pw.size == 20
    assert sorted(t.session for t in pw.export) == ["api", "db", "worker"]
    for svc in ("api", "worker", "db"):
        d = s[svc].document.secret("db_password")
        assert d is not None and d.import_ is not None and d.kind is None
        assert d.import_.session == GLOBAL_SESSION


def test_local_secrets_stay_with_their_service_and_exports_name_importers() -> None:
    s = by_name(compiled("three-services"))
    key = s["worker"].document.secret("signing_key")
    assert key is not None and key.kind == "binary"
    # `export: ["*"]` becomes exactly the mesh sessions that import it
    assert [(t.session, t.namespace) for t in key.export] == [("db", None)]
    imported = s["db"].document.secret("signing_key")
    assert imported is not None and imported.import_ is not None
    assert imported.import_.session == "worker"
    assert s["api"].document.secret("signing_key") is None
    assert s["worker"].document.secret("api_key") is None


def test_program_environment_is_least_privilege() -> None:
    s = by_name(compiled("three-services"))
    env = s["api"].document.services[0].environment
    assert sorted(env) == ["DB_HOST", "DB_PASSWORD", "LOG_LEVEL", "TLS_KEY_FILE"]
    assert env["DB_HOST"] == "db" and env["DB_PASSWORD"] == "$$SCONE::db_password$$"
    assert "imagePullSecrets" not in env and "APP_SERVICE_PORT" not in env
    assert s["worker"].document.services[0].environment["QUEUE"] == "jobs-shop"


def test_mode_and_tolerances_reach_every_session() -> None:
    prod = by_name(compiled("three-services"))
    debug = by_name(compiled("three-services", "debug"))
    for name in ("api", "worker", "db", GLOBAL_SESSION):
        a = prod[name].document.security.attestation
        assert a.mode == "production" and not a.allows_simulation
        assert a.tolerate == ["insecure-configuration", "outdated-tcb",
                              "software-hardening-needed"]
        assert a.ignore_advisories == ["INTEL-SA-00615"]
        assert debug[name].document.security.attestation.allows_simulation


def test_image_secrets_and_extra_policies() -> None:
    s = by_name(compiled("three-services"))
    tok = s["worker"].document.secret("worker_token")
    assert tok is not None and tok.size == 32
    qk = s["worker"].document.secret("queue_key")
    assert qk is not None and [(t.session, t.namespace) for t in qk.export] == [
        ("reader", "shop-audit")]  # {{namespace}} filled in as text
    assert s["audit-reader"].kind == "extra" and s["audit-reader"].config_id is None
    assert s["api"].config_id == "shop/api/api"


def test_the_release_is_recorded_in_every_derived_session_only(tmp_path: Path) -> None:
    plain = by_name(compiled("three-services"))
    rel = by_name(compiled("three-services", release=Release(name="shop-v1", version=3)))
    for name in ("api", "worker", "db", GLOBAL_SESSION):
        assert plain[name].document.release is None
        assert "release" not in plain[name].document.canonical()  # older hashes unchanged
        doc = rel[name].document
        assert doc.canonical()["release"] == {"name": "shop-v1", "version": 3}
        assert content_hash(doc) != content_hash(plain[name].document)
        # the release changes nothing else: secrets, services, security are the same
        assert doc.model_copy(update={"release": None}) == plain[name].document
        data = doc.model_dump(mode="json", by_alias=True, exclude_none=True)
        assert session_from_data(data).release == doc.release  # CAS accepts it
    # a session the user wrote (extra_policies) is sent as written
    assert rel["audit-reader"].document.release is None
    # only what was given: a version alone, a name alone
    only = by_name(compiled("three-services", release=Release(version=4)))
    assert only["api"].document.canonical()["release"] == {"version": 4}
    write_policies(tmp_path, list(only.values()))
    written = json.loads((tmp_path / "policies" / "api.json").read_text())
    assert written["release"] == {"version": 4}
    assert "release" not in json.loads((tmp_path / "policies" / "audit-reader.json").read_text())


def test_a_release_field_is_checked_and_an_empty_one_is_none() -> None:
    from pydantic import ValidationError

    base = {"name": "s", "services": []}
    empty = SessionDoc.model_validate({**base, "release": {}})
    assert empty.release is None
    assert session_hash(empty) == session_hash(SessionDoc.model_validate(base))
    for bad in ({"version": -1}, {"version": "three"}, {"name": "a b"}, {"when": 1}):
        with pytest.raises(ValidationError):
            SessionDoc.model_validate({**base, "release": bad})


def test_conflicting_global_definitions_are_one_error(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "case"
    shutil.copytree(GOLDEN / "three-services", root)
    db = root / "services" / "db.yaml"
    db.write_text(db.read_text().replace("size: 20", "size: 12"))
    from tests.mesh.support import descriptions
    from veil.manifest.load import load_mesh

    doc = load_mesh(root / "mesh.yaml")
    found = descriptions_for(doc, descriptions(root / "services"))
    resolved = resolve_mesh(doc, {i: f.description for i, f in found.items()})
    with pytest.raises(ManifestError) as err:
        compile_mesh(doc.model, resolved, "production", file=doc.file)
    text = err.value.render()
    assert "db_password" in text and "`api`" in text and "`db`" in text


def test_missing_image_secrets_file_names_the_mesh_line(tmp_path: Path) -> None:
    from veil.manifest.load import load_mesh

    mesh = tmp_path / "mesh.yaml"
    mesh.write_text((GOLDEN / "three-services" / "mesh.yaml").read_text())
    with pytest.raises(ManifestError) as err:
        image_secrets(load_mesh(mesh))
    p = err.value.problems[0]
    assert (p.file, p.line, p.path) == (str(mesh), 17, "services[1].image_secrets")
    assert "worker-secrets.yaml" in p.message


def test_bad_image_secrets_entry_names_its_file_and_line(tmp_path: Path) -> None:
    from veil.manifest.load import load_mesh

    mesh = tmp_path / "mesh.yaml"
    mesh.write_text((GOLDEN / "three-services" / "mesh.yaml").read_text())
    (tmp_path / "worker-secrets.yaml").write_text("- name: ok\n  kind: ascii\n"
                                                  "- name: bad\n  kind: rot13\n")
    with pytest.raises(ManifestError) as err:
        image_secrets(load_mesh(mesh))
    p = err.value.problems[0]
    assert p.file == str(tmp_path / "worker-secrets.yaml") and p.line == 4
    assert json.dumps(p.path).count("secrets[1]") == 1


def test_a_stable_image_stays_admitted_during_a_rollout() -> None:
    from veil.manifest.description import StableImage

    doc, lookup = case("three-services")
    image = "registry.example/shop/api:1"
    old = "e" * 64
    lookup.by_image = {**lookup.by_image, image: lookup.by_image[image].model_copy(
        update={"stable": StableImage(image="registry.example/shop/api:0", measurement=old)})}
    found = descriptions_for(doc, lookup)
    resolved = resolve_mesh(doc, {i: f.description for i, f in found.items()})
    s = by_name(compile_mesh(doc.model, resolved, "production", file=doc.file,
                             image_secrets=image_secrets(doc)))
    api = s["api"].document.services[0].attestation.measurement
    assert api == [lookup.by_image[image].measurement, old]
    assert len(s["db"].document.services[0].attestation.measurement) == 1


def test_policy_files_hold_no_secret_value(tmp_path: Path) -> None:
    import shutil

    from tests.mesh.support import descriptions
    from veil.manifest.load import load_mesh

    root = tmp_path / "case"
    shutil.copytree(GOLDEN / "three-services", root)
    (root / "worker-secrets.yaml").write_text(
        "- name: api_token\n  kind: explicit\n  value: hunter2-not-for-files\n")
    doc = load_mesh(root / "mesh.yaml")
    found = descriptions_for(doc, descriptions(root / "services"))
    resolved = resolve_mesh(doc, {i: f.description for i, f in found.items()})
    sessions = compile_mesh(doc.model, resolved, "production", file=doc.file,
                            image_secrets=image_secrets(doc))
    worker = next(c for c in sessions if c.name == "worker")
    token = worker.document.secret("api_token")
    assert token is not None and token.value == "hunter2-not-for-files"  # what CAS receives
    write_policies(tmp_path, sessions)
    text = "".join(f.read_text() for f in (tmp_path / "policies").iterdir())
    assert "hunter2-not-for-files" not in text and "<explicit>" in text
