"""Mesh apply against a real CAS: sessions created once, re-apply a no-op, a changed mesh
updates with predecessors and keeps secrets, all or nothing, and the CAS's identity first."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cas.conftest import CasServer
from tests.cas.helpers import Launcher
from tests.mesh.support import GOLDEN, descriptions, measurement
from veil.errors import OperationalError, UserError
from veil.manifest.load import load_mesh
from veil.mesh import MeshOptions, apply_mesh
from veil.mesh.store import SessionStore, connect_cas
from veil.mesh.trust import expected_key
from veil.policy.compile import GLOBAL_SESSION

pytestmark = [pytest.mark.integration]


def mesh_case(tmp_path: Path, cas: CasServer, namespace: str, **edits: str) -> Path:
    root = tmp_path / "case"
    shutil.copytree(GOLDEN / "three-services", root)
    mesh = root / "mesh.yaml"
    text = mesh.read_text().replace("cas.example:8081", cas.addr)
    text = text.replace("namespace: shop", f"namespace: {namespace}")
    for old, new in edits.items():
        text = text.replace(old, new)
    mesh.write_text(text)
    return mesh


def apply(mesh: Path, cas: CasServer, **kw: Any) -> Any:
    connect = kw.pop("connect", None)
    kw.setdefault("write_chart", False)
    opts = MeshOptions(mode="debug", target=mesh.parent / "target", **kw)
    return apply_mesh(load_mesh(mesh), opts, descriptions=descriptions(mesh.parent / "services"),
                      connect=connect)


@pytest.fixture
def trusted(mesh_cas: CasServer) -> None:
    from veil.mesh.trust import trust

    trust(mesh_cas.addr, mesh_cas.key)


def attest(cas: CasServer, config_id: str, image: str) -> dict[str, Any]:
    launcher = Launcher(cas.addr, cas.files.cert.read_bytes())
    try:
        r = launcher.attest(config_id, measurement(image))
        assert r.status_code == 200, r.text
        return dict(r.json()["env"])
    finally:
        launcher.close()


def test_apply_reapply_and_change(mesh_cas: CasServer, trusted: None, tmp_path: Path) -> None:
    mesh = mesh_case(tmp_path, mesh_cas, "shop1")
    first = apply(mesh, mesh_cas)
    assert first.counts() == {"created": 5}
    assert first.cas_key_fingerprint and first.uploaded
    api = attest(mesh_cas, first.config_id("api"), "registry.example/shop/api:1")
    db = attest(mesh_cas, first.config_id("db"), "registry.example/shop/db:1")
    # a global secret is ONE value, whichever service receives it
    assert api["DB_PASSWORD"] == db["MARIADB_ROOT_PASSWORD"] and len(api["DB_PASSWORD"]) == 20
    worker = attest(mesh_cas, first.config_id("worker"), "registry.example/shop/worker:1")
    # a local secret exported by `worker` reaches its importer `db`: the same 32 bytes
    assert bytes.fromhex(db["VERIFY_KEY"]) == base64.b64decode(worker["SIGNING_KEY"])
    assert len(bytes.fromhex(db["VERIFY_KEY"])) == 32

    again = apply(mesh, mesh_cas)
    assert again.counts() == {"unchanged": 5}
    assert all(o.written is None for o in again.sessions)

    mesh.write_text(mesh.read_text().replace('value: "db"', 'value: "db.internal"'))
    changed = apply(mesh, mesh_cas)
    by = {o.name: o for o in changed.sessions}
    assert {n for n, o in by.items() if o.change == "updated"} == {"api", "worker"}
    assert by["api"].written is not None and by["api"].written.version == 2
    assert by["db"].change == "unchanged" and by[GLOBAL_SESSION].change == "unchanged"
    assert any('"DB_HOST": "db.internal"' in ln for ln in by["api"].plan.diff)
    api2 = attest(mesh_cas, changed.config_id("api"), "registry.example/shop/api:1")
    assert api2["DB_HOST"] == "db.internal"
    assert api2["DB_PASSWORD"] == api["DB_PASSWORD"]  # the generated secret was kept


def _releases(cas: CasServer, ns: str, names: list[str]) -> dict[str, tuple[int, Any]]:
    """session -> (CAS version, its `release`)."""
    from veil.paths import config_dir

    with cas.client(config_dir() / "identity") as c:
        out = {}
        for n in names:
            r = c.read_session(ns, n)
            out[n] = (r["version"], r["session"].get("release"))
        return out


def test_the_release_version_is_recorded_in_the_sessions(mesh_cas: CasServer, trusted: None,
                                                         tmp_path: Path) -> None:
    """--release-version N in every derived session: the same N again writes nothing, a new N
    a new version of each (predecessor named, generated secrets kept); a user-written
    `extra_policies` session is left as written."""
    mesh = mesh_case(tmp_path, mesh_cas, "shoprel")
    derived = ["api", "worker", "db", GLOBAL_SESSION]
    first = apply(mesh, mesh_cas, release_version=3)
    assert first.counts() == {"created": 5}
    assert _releases(mesh_cas, "shoprel", derived) == {n: (1, {"version": 3}) for n in derived}
    assert _releases(mesh_cas, "shoprel", ["audit-reader"]) == {"audit-reader": (1, None)}
    api = attest(mesh_cas, first.config_id("api"), "registry.example/shop/api:1")
    worker = attest(mesh_cas, first.config_id("worker"), "registry.example/shop/worker:1")

    again = apply(mesh, mesh_cas, release_version=3)
    assert again.counts() == {"unchanged": 5}
    assert all(o.written is None for o in again.sessions)

    heads = {n: _history(mesh_cas, "shoprel", n)[-1] for n in derived}
    fourth = apply(mesh, mesh_cas, release_version=4)
    by = {o.name: o for o in fourth.sessions}
    assert {n for n, o in by.items() if o.change == "updated"} == set(derived)
    assert by["audit-reader"].change == "unchanged"
    for n in derived:
        assert by[n].plan.predecessor == heads[n]
        assert any('"version": 4' in ln for ln in by[n].plan.diff)
    assert _releases(mesh_cas, "shoprel", derived) == {n: (2, {"version": 4}) for n in derived}
    api2 = attest(mesh_cas, fourth.config_id("api"), "registry.example/shop/api:1")
    worker2 = attest(mesh_cas, fourth.config_id("worker"), "registry.example/shop/worker:1")
    assert api2["DB_PASSWORD"] == api["DB_PASSWORD"]  # the global secret was kept
    assert worker2["SIGNING_KEY"] == worker["SIGNING_KEY"]  # and a local one

    named = apply(mesh, mesh_cas, release="shop-r", release_version=4)
    assert named.counts() == {"updated": 4, "unchanged": 1}
    assert _releases(mesh_cas, "shoprel", ["api"]) == {
        "api": (3, {"name": "shop-r", "version": 4})}

    dry = apply(mesh, mesh_cas, release="shop-r", release_version=5, dry_run=True)
    assert not dry.uploaded and dry.counts() == {"updated": 4, "unchanged": 1}
    written = json.loads((mesh.parent / "target" / "policies" / "api.json").read_text())
    assert written["release"] == {"name": "shop-r", "version": 5}
    assert _releases(mesh_cas, "shoprel", ["api"])["api"][0] == 3  # nothing uploaded


def test_simulation_is_refused_by_a_production_mesh(mesh_cas: CasServer, trusted: None,
                                                    tmp_path: Path) -> None:
    mesh = mesh_case(tmp_path, mesh_cas, "shopprod")
    opts = MeshOptions(mode="production", target=tmp_path / "t", write_chart=False)
    result = apply_mesh(load_mesh(mesh), opts, descriptions=descriptions(mesh.parent / "services"))
    launcher = Launcher(mesh_cas.addr, mesh_cas.files.cert.read_bytes())
    try:
        r = launcher.attest(result.config_id("api"), measurement("registry.example/shop/api:1"))
    finally:
        launcher.close()
    assert r.status_code == 403 and "production" in r.text


def test_a_race_leaves_cas_as_it_was(mesh_cas: CasServer, trusted: None, tmp_path: Path) -> None:
    mesh = mesh_case(tmp_path, mesh_cas, "shop2")
    apply(mesh, mesh_cas)
    mesh.write_text(mesh.read_text().replace('value: "db"', 'value: "db2"'))
    # someone else updates `worker` between our read and our write
    raced: dict[str, bool] = {}

    def connect(addr: str, key: str | None, trust_any: bool) -> tuple[SessionStore, str | None]:
        store, warning = connect_cas(addr, expected_key(addr, key, trust_any=trust_any))
        real_commit = store.commit

        def commit(namespace: str, documents: list[dict[str, Any]]) -> Any:
            cur = store.client.read_session(namespace, "worker")
            doc = dict(cur["session"], predecessor=cur["hash"])
            doc["services"][0]["environment"]["QUEUE"] = "other"
            store.client.update_session(namespace, doc)
            raced["done"] = True
            return real_commit(namespace, documents)

        store.commit = commit  # type: ignore[method-assign]
        return store, warning

    before = {n: _history(mesh_cas, "shop2", n) for n in ("api", "worker", "db")}
    with pytest.raises(UserError) as err:
        apply(mesh, mesh_cas, connect=connect)
    assert raced and "session shop2/" in err.value.message and "409" in err.value.message
    after = {n: _history(mesh_cas, "shop2", n) for n in ("api", "worker", "db")}
    assert after["api"] == before["api"]  # api's update was in the refused transaction
    assert len(after["worker"]) == len(before["worker"]) + 1  # only the other writer's


def _history(cas: CasServer, ns: str, name: str) -> list[str]:
    from veil.paths import config_dir

    with cas.client(config_dir() / "identity") as c:
        return [r["hash"] for r in c.history(ns, name)]


def test_new_sessions_of_a_refused_transaction_do_not_exist(
        mesh_cas: CasServer, trusted: None, tmp_path: Path) -> None:
    from veil.paths import config_dir

    with mesh_cas.client(config_dir() / "identity") as c:
        good = {"version": "0.3", "name": "fine"}
        bad = {"version": "0.3", "name": "broken", "predecessor": "0" * 64}
        with pytest.raises(UserError) as err:
            c.transaction("shop3", [good, bad])
        assert "session shop3/broken" in err.value.message
        assert c.current("shop3", ["fine", "broken"]) == {"fine": None, "broken": None}


def test_wrong_cas_key_stops_before_anything_is_sent(mesh_cas: CasServer, tmp_path: Path
                                                      ) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    mesh = mesh_case(tmp_path, mesh_cas, "shop4")
    mesh.write_text(mesh.read_text().replace(
        "    tolerance:", f"    cas_key: {base64.b64encode(other).decode()}\n    tolerance:"))
    with pytest.raises(OperationalError) as err:
        apply(mesh, mesh_cas)
    msg = err.value.message
    assert msg.count("SHA256:") == 2 and "nothing was sent" in msg
    from veil.paths import config_dir

    with mesh_cas.client(config_dir() / "identity") as c:
        assert c.current("shop4", ["api"]) == {"api": None}


def test_no_known_key_is_a_user_error(mesh_cas: CasServer, tmp_path: Path) -> None:
    mesh = mesh_case(tmp_path, mesh_cas, "shop5")
    with pytest.raises(UserError) as err:
        apply(mesh, mesh_cas)
    assert f"veil cas trust {mesh_cas.addr} KEY" in (err.value.hint or "")


def test_cas_trust_command_records_the_key(mesh_cas: CasServer, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from veil.cli import main

    assert main(["cas", "trust", mesh_cas.addr, "bm90IGEga2V5"]) == 2
    assert "not a CAS public key" in capsys.readouterr().err
    assert main(["cas", "trust", mesh_cas.addr, mesh_cas.key]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trusting SHA256:") and mesh_cas.addr in out
    mesh = mesh_case(tmp_path, mesh_cas, "shop6")
    assert apply(mesh, mesh_cas).counts() == {"created": 5}


def test_trust_any_takes_the_presented_key_with_a_warning(mesh_cas: CasServer, tmp_path: Path
                                                          ) -> None:
    mesh = mesh_case(tmp_path, mesh_cas, "shop7",
                     **{'tolerance: "-G -S"': 'tolerance: "--only_for_testing-trust-any -G -S"'})
    result = apply(mesh, mesh_cas)
    assert result.counts() == {"created": 5}
    assert len(result.warnings) == 1 and "--only_for_testing-trust-any" in result.warnings[0]
    assert result.cas_key_fingerprint in result.warnings[0]
    # a recorded key is still checked: trust-any never overrides one
    from veil.mesh.trust import trust

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    trust(mesh_cas.addr, base64.b64encode(other).decode())
    with pytest.raises(OperationalError, match="nothing was sent"):
        apply(mesh, mesh_cas)


def test_a_changed_explicit_secret_value_is_applied(mesh_cas: CasServer, trusted: None,
                                                    tmp_path: Path) -> None:
    """Explicit values never leave CAS, so the client cannot see whether one changed: the
    sessions holding one go into the transaction, and CAS writes a version only if a value
    (or anything else) changed."""
    mesh = mesh_case(tmp_path, mesh_cas, "shopx")
    secrets = mesh.parent / "worker-secrets.yaml"
    secrets.write_text(secrets.read_text() + "- name: api_token\n  kind: explicit\n"
                       "  value: first-value\n")
    assert apply(mesh, mesh_cas).counts() == {"created": 5}
    again = apply(mesh, mesh_cas)
    assert again.counts() == {"unchanged": 5}  # the same value: no new version
    assert len(_history(mesh_cas, "shopx", "worker")) == 1
    secrets.write_text(secrets.read_text().replace("first-value", "second-value"))
    dry = apply(mesh, mesh_cas, dry_run=True)
    worker = next(o for o in dry.sessions if o.name == "worker")
    assert any("CAS compares" in line for line in worker.plan.diff)
    changed = apply(mesh, mesh_cas)
    by = {o.name: o for o in changed.sessions}
    assert by["worker"].change == "updated" and by["worker"].written is not None
    assert by["worker"].written.version == 2
    assert {n for n, o in by.items() if o.change == "updated"} == {"worker"}
    assert len(_history(mesh_cas, "shopx", "worker")) == 2


def test_every_missing_variable_is_named_before_anything_is_sent_or_written(
        mesh_cas: CasServer, trusted: None, tmp_path: Path) -> None:
    from veil.errors import ManifestError
    from veil.paths import config_dir

    mesh = mesh_case(tmp_path, mesh_cas, "shopmiss")
    text = mesh.read_text()
    text = text.replace('      - name: DB_HOST\n        value: "db"\n', "")
    text = text.replace('      - name: QUEUE\n        value: "jobs-{{namespace}}"\n', "")
    mesh.write_text(text)
    with pytest.raises(ManifestError) as err:
        apply(mesh, mesh_cas, write_chart=True)
    msg = " ".join(p.message for p in err.value.problems)
    for missing in ("DB_HOST", "QUEUE"):
        assert missing in msg
    assert "api" in msg and "worker" in msg  # every service that lacks one, at once
    assert not (mesh.parent / "target").exists()
    with mesh_cas.client(config_dir() / "identity") as c:
        assert set(c.current("shopmiss", ["api", "worker", "db"]).values()) == {None}


def test_an_unchanged_session_comes_back_without_its_document(
        mesh_cas: CasServer, trusted: None, tmp_path: Path) -> None:
    """Re-apply compares content hashes: CAS answers `same` and sends no document; a session
    whose hash differs, or that the caller may not read, gets the usual answer."""
    from veil.mesh.plan import known_hashes
    from veil.paths import config_dir

    mesh = mesh_case(tmp_path, mesh_cas, "shophash")
    first = apply(mesh, mesh_cas)
    known = known_hashes([o.plan.session for o in first.sessions])
    names = sorted(known)
    with mesh_cas.client(config_dir() / "identity") as c:
        same = c.current("shophash", names, known)
        assert all(v is not None and v.get("same") and "session" not in v
                   for v in same.values())
        other = c.current("shophash", names, {**known, "api": "0" * 64})
        assert other["api"] is not None and "session" in other["api"]
        assert other["db"] is not None and other["db"].get("same")
    with mesh_cas.client(tmp_path / "mallory") as m, pytest.raises(UserError, match="403"):
        m.current("shophash", ["api"], {"api": known["api"]})  # no oracle for others
