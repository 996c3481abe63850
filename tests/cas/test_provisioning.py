"""Fast tests of nonces and provisioning against an in-process CAS on a real SQLite file: which
config ids get a nonce, what a configuration holds, that a refused attempt uses its nonce up,
that imports are checked on every provisioning (never served from the cache), and that a
corrupt sealed secret fails only its own request. scripts/mutation.sh runs them against every
mutant of `veil/cas/attest.py`; the same promises are attacked through a server in
test_nonces_exports.py, test_integrity.py and test_limits.py."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.cas.helpers import M1, M2, session
from veil.cas import attest, limits, sessions
from veil.cas.core import Cas, Refusal
from veil.cas.state import init_state, load_keyring
from veil.cas.store import make_engine, make_reader, write_gate
from veil.cas.verifiers import Evidence
from veil.session.load import session_from_data

CID = "ns/hello/app"


@pytest.fixture
def cas(tmp_path: Path) -> Iterator[Cas]:
    files = init_state(tmp_path / "state", ["127.0.0.1"])
    url = files.default_db_url
    engine = make_engine(url)
    c = Cas(engine, load_keyring(files), make_reader(url, engine), write_gate(url))
    sessions.create(c, "ns", session_from_data(session(), file="test"), "alice")
    yield c
    engine.dispose()


def _evidence(cid: str, nonce: str, measurement: str = M1) -> Evidence:
    report = {"measurement": measurement, "nonce": nonce}
    rep = base64.b64encode(json.dumps(report).encode()).decode()
    return Evidence(cid, measurement, nonce, "simulation", rep)


def _attest(cas: Cas, cid: str = CID, measurement: str = M1) -> dict[str, Any]:
    nonce = attest.issue_nonce(cas, cid)["nonce"]
    return attest.provision(cas, _evidence(cid, nonce, measurement))


def _audit(cas: Cas) -> list[dict[str, Any]]:
    with cas.engine.connect() as conn:
        return [json.loads(e) for e in conn.execute(text("SELECT entry FROM audit ORDER BY seq"))
                .scalars()]


def test_a_nonce_only_for_a_service_that_exists(cas: Cas) -> None:
    before = len(_audit(cas))
    for cid, status in [("ns/nosuch/app", 404), ("ns/hello/nosuch", 404), ("other/hello/app", 404),
                        ("ns/hello", 400), ("ns//app", 400), ("a/b/c/d", 400)]:
        with pytest.raises(Refusal) as refused:
            attest.issue_nonce(cas, cid)
        assert refused.value.status == status, cid
        assert not attest.known_config_id(cas, cid)
    denied = [e for e in _audit(cas)[before:] if e["event"] == "denied"]
    assert [e["config_id"] for e in denied] == ["ns/nosuch/app", "ns/hello/nosuch",
                                                "other/hello/app", "ns/hello", "ns//app",
                                                "a/b/c/d"]
    t0 = int(time.time())
    out = attest.issue_nonce(cas, CID)
    t1 = int(time.time())
    assert out["expires_in"] == attest.NONCE_TTL == 60
    (expires,) = struct.unpack(">I", base64.b64decode(out["nonce"])[:4])
    assert t0 + 60 <= expires <= t1 + 60
    assert attest.known_config_id(cas, CID)  # remembered: the next nonce needs no read


def test_a_config_id_is_remembered_for_two_seconds(cas: Cas) -> None:
    """docs/cas.md: a worker remembers for 2 s that a config id names a service."""
    cas.known[CID] = time.monotonic() - 1.5
    assert attest.known_config_id(cas, CID)
    cas.known[CID] = time.monotonic() - 2.5
    assert not attest.known_config_id(cas, CID)
    assert not attest.known_config_id(cas, "ns/never/app")


def test_the_configuration_has_every_reference_substituted(cas: Cas) -> None:
    config = _attest(cas)
    pw = config["env"]["API_PASSWORD"]
    assert len(pw) == 10 and "$$" not in pw
    assert config["env"] == {"API_PASSWORD": pw, "API_USER": "myself"}
    assert config["argv"] == ["python3", "print_env.py", "--pw", pw]  # split like a shell
    assert config["pwd"] == "/python"
    assert config["files"] == [{"path": "/etc/app.conf", "mode": "0640",
                                "content": base64.b64encode(f"pw={pw}".encode()).decode()}]
    assert _attest(cas) == config  # the same secret every time (cached per version)
    held = sum(len(k) + len(v) for k, v in config["env"].items()) + sum(map(len, config["argv"]))
    held += sum(len(f["path"]) + len(f["content"]) for f in config["files"])
    assert cas.configs.size >= 512 + held  # the cache counts what it holds in bytes
    entry = _audit(cas)[-1]
    assert entry["event"] == "provision" and entry["outcome"] == "ok"
    assert entry["measurement"] == M1 and "launch" not in entry  # simulation: no hardware claims


def test_a_command_given_as_a_list_is_kept_as_it_is(cas: Cas) -> None:
    doc = session(name="listed")
    doc["services"][0]["command"] = ["python3", "a b.py", "$$SCONE::password$$"]
    sessions.create(cas, "ns", session_from_data(doc, file="test"), "alice")
    argv = _attest(cas, "ns/listed/app")["argv"]
    assert argv[:2] == ["python3", "a b.py"] and len(argv[2]) == 10


def test_a_refused_attempt_uses_up_its_nonce_and_is_audited(cas: Cas) -> None:
    nonce = attest.issue_nonce(cas, CID)["nonce"]
    with pytest.raises(Refusal, match="measurement") as refused:
        attest.provision(cas, _evidence(CID, nonce, M2))
    assert refused.value.status == 403
    with pytest.raises(Refusal, match="already used") as again:
        attest.provision(cas, _evidence(CID, nonce))
    assert again.value.status == 403
    # evidence whose report is bound to another nonce: refused by the verifier, nonce used up
    other = attest.issue_nonce(cas, CID)["nonce"]
    report = base64.b64encode(json.dumps({"measurement": M1, "nonce": nonce}).encode()).decode()
    with pytest.raises(Refusal, match="not bound") as unbound:
        attest.provision(cas, Evidence(CID, M1, other, "simulation", report))
    assert unbound.value.status == 403
    with pytest.raises(Refusal, match="already used"):
        attest.provision(cas, _evidence(CID, other))
    denied = [e for e in _audit(cas) if e["event"] == "denied"]
    assert len(denied) == 4 and all(e["op"] == "provision" for e in denied)
    assert _attest(cas)["env"]["API_USER"] == "myself"  # control


def test_a_nonce_for_another_config_id_is_refused(cas: Cas) -> None:
    sessions.create(cas, "ns", session_from_data(session(name="two"), file="test"), "alice")
    nonce = attest.issue_nonce(cas, "ns/two/app")["nonce"]
    with pytest.raises(Refusal, match="not issued by this CAS for this config id") as refused:
        attest.provision(cas, _evidence(CID, nonce))
    assert refused.value.status == 403


def _exporter() -> dict[str, Any]:
    secret = {"name": "password", "kind": "ascii", "size": 10,
              "export": [{"session": "app", "namespace": "ns"}]}
    return session(name="src", secrets=[{"name": "first", "kind": "ascii", "size": 4}, secret])


def _importer() -> dict[str, Any]:
    return session(name="app", secrets=[
        {"name": "own", "kind": "ascii", "size": 4},  # an own secret before the import
        {"name": "password", "import": {"session": "ns/src", "secret": "password"}},
    ])


def _update(cas: Cas, namespace: str, doc: dict[str, Any]) -> None:
    head = cas.head(namespace, doc["name"])
    assert head is not None
    sessions.update(cas, namespace, session_from_data({**doc, "predecessor": head.hash},
                                                      file="test"), "alice")


def test_an_import_is_checked_every_time_never_served_from_the_cache(cas: Cas) -> None:
    sessions.create(cas, "ns", session_from_data(_exporter(), file="test"), "alice")
    sessions.create(cas, "ns", session_from_data(_importer(), file="test"), "alice")
    src = _attest(cas, "ns/src/app")["env"]["API_PASSWORD"]
    assert _attest(cas, "ns/app/app")["env"]["API_PASSWORD"] == src
    assert _attest(cas, "ns/app/app")["env"]["API_PASSWORD"] == src
    # the exporter stops exporting: the importing session gets nothing from then on
    revoked = _exporter()
    del revoked["secrets"][1]["export"]
    _update(cas, "ns", revoked)
    with pytest.raises(Refusal, match="no longer exported") as refused:
        _attest(cas, "ns/app/app")
    assert refused.value.status == 403


def test_an_export_bound_to_another_owner_does_not_count(cas: Cas) -> None:
    """The export row names the owner of the target namespace when it was written; a
    namespace that changed hands (here: its owner row rewritten with a valid MAC, as only CAS
    could) does not inherit it."""
    sessions.create(cas, "ns", session_from_data(_exporter(), file="test"), "alice")
    sessions.create(cas, "ns", session_from_data(_importer(), file="test"), "alice")
    assert _attest(cas, "ns/app/app")["env"]["API_PASSWORD"]
    snap = cas.snapshot()
    key = next(k for k in snap.exports if k[3:] == ("ns", "app"))
    owner, mac = snap.exports[key]
    snap.exports[key] = ("mallory", mac)  # what a rebound export would look like
    try:
        with pytest.raises(Refusal, match="no longer exported") as refused:
            attest.provision(cas, _evidence("ns/app/app",
                                            attest.issue_nonce(cas, "ns/app/app")["nonce"]))
        assert refused.value.status == 403
    finally:
        snap.exports[key] = (owner, mac)


def test_a_corrupt_sealed_secret_fails_only_its_own_request(cas: Cas, tmp_path: Path) -> None:
    sessions.create(cas, "ns", session_from_data(session(name="other"), file="test"), "alice")
    with sqlite3.connect(tmp_path / "state" / "cas.db") as db:
        (sealed,) = db.execute("SELECT sealed FROM secrets WHERE session = 'hello'").fetchone()
        broken = bytearray(sealed)
        broken[len(broken) // 2] ^= 1
        db.execute("UPDATE secrets SET sealed = ? WHERE session = 'hello'", (bytes(broken),))
    cas.configs = type(cas.configs)(cas.configs.limit)
    with pytest.raises(Refusal) as refused:
        _attest(cas)
    assert refused.value.status == 500
    assert _attest(cas, "ns/other/app")["env"]["API_USER"] == "myself"  # others unaffected
    entry = [e for e in _audit(cas) if e["event"] == "denied"][-1]
    assert entry["config_id"] == CID


def test_what_a_worker_may_rule_out_from_memory(cas: Cas) -> None:
    """`maybe_named` (the flood gate's hint, no database read) is False only for config ids
    that named nothing in the last verified state."""
    fresh = Cas(cas.engine, cas.keys, cas.reader, cas.gate)
    assert fresh.last_snapshot is None and attest.maybe_named(fresh, "any/thing/at-all")
    cas.snapshot()
    assert attest.maybe_named(cas, CID)
    assert not attest.maybe_named(cas, "ns/nosuch/app")
    assert not attest.maybe_named(cas, "hello/ns/app")
    assert not attest.maybe_named(cas, "ns/hello") and not attest.maybe_named(cas, "a/b/c/d")
    assert attest.maybe_named(cas, "ns/hello/other")  # the document is not parsed yet: maybe
    _attest(cas)
    assert attest.maybe_named(cas, CID)  # known: no further look
    cas.known.clear()
    assert attest.maybe_named(cas, CID)  # by the snapshot and the parsed document
    assert not attest.maybe_named(cas, "ns/hello/other")  # now known not to name a service


def test_a_bad_nonce_is_refused_and_audited(cas: Cas) -> None:
    for run in (lambda e: attest.provision(cas, e),
                lambda e: asyncio.run(attest.provision_async(cas, e))):
        before = len(_audit(cas))
        with pytest.raises(Refusal, match="not base64") as refused:
            run(_evidence(CID, "!!!!"))
        assert refused.value.status == 400
        entry = _audit(cas)[before:]
        assert [(e["event"], e["op"]) for e in entry] == [("denied", "provision")]


def test_provisioning_on_the_event_loop_gives_the_same_answers(cas: Cas) -> None:
    nonce = attest.issue_nonce(cas, CID)["nonce"]
    config = asyncio.run(attest.provision_async(cas, _evidence(CID, nonce)))
    assert config == _attest(cas)
    with pytest.raises(Refusal, match="already used"):
        asyncio.run(attest.provision_async(cas, _evidence(CID, nonce)))


def test_a_configuration_that_cannot_be_built_is_a_409(cas: Cas,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    doc = session(name="fmt")
    doc["services"][0]["environment"]["BAD"] = "$$SCONE::password:chain$$"  # not for ascii
    sessions.create(cas, "ns", session_from_data(doc, file="test"), "alice")
    with pytest.raises(Refusal, match=r"cannot be provisioned: .*chain") as refused:
        _attest(cas, "ns/fmt/app")
    assert refused.value.status == 409
    monkeypatch.setattr(limits, "ANSWER_MAX", 100)
    with pytest.raises(Refusal, match="over the limit of 100 bytes") as big:
        _attest(cas)
    assert big.value.status == 409


def _used(cas: Cas) -> set[str]:
    with cas.engine.connect() as conn:
        return set(conn.execute(text("SELECT nonce FROM used_nonces")).scalars())


def test_the_sweep_forgets_only_used_nonces_past_their_expiry(
    cas: Cas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Used nonces are deleted now and then (every _SWEEP_EVERY-th provisioning), once they
    have expired — one still valid must stay, or it could be replayed."""
    monkeypatch.setattr(attest, "_SWEEP_EVERY", 2)
    monkeypatch.setattr(attest, "_counter", 0)
    with cas.write() as conn:
        conn.execute(text("INSERT INTO used_nonces (nonce, expires) VALUES ('old', :e)"),
                     {"e": int(time.time()) - 60})
    body = struct.pack(">I", int(time.time()) + 3) + b"\x07" * 12  # valid for 3 more seconds
    soon = base64.b64encode(body + attest._nonce_mac(cas, CID, body)).decode()
    attest.provision(cas, _evidence(CID, soon))
    cas.committer.run(lambda conn: None)
    assert "old" in _used(cas)  # one provisioning: no sweep yet
    _attest(cas)
    cas.committer.run(lambda conn: None)  # the sweep went into an earlier batch
    assert "old" not in _used(cas) and soon in _used(cas)
    with pytest.raises(Refusal, match="already used"):
        attest.provision(cas, _evidence(CID, soon))
