"""The transaction endpoint (`POST /v1/namespaces/NS/transaction`), on SQLite and PostgreSQL:
every session of it or none, one audit entry per session in one unbroken chain, shared secrets
exported inside the transaction, kept on update, and its rows authenticated like any other
(a head put back with SQL is detected)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.cas.conftest import CasServer
from tests.cas.helpers import session
from tests.cas.test_integrity import Rig, _refused_as_tampered
from veil.errors import UserError

pytestmark = pytest.mark.integration

NS = "mesh"
N = 12
TABLES = ("namespaces", "session_heads", "session_versions", "secrets", "exports")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_rig(request: pytest.FixtureRequest, cas_factory: Callable[..., CasServer],
            tmp_path: Path) -> Iterator[Rig]:
    url = None
    if request.param == "postgresql":
        pg_url: str = request.getfixturevalue("pg_url")
        name = "tx_" + uuid.uuid4().hex[:12]
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    r = Rig(cas_factory, tmp_path, db_url=url)
    yield r
    r.stop()


def mesh(n: int) -> list[dict[str, Any]]:
    """A shared session exporting one secret to n service sessions that import it."""
    shared: dict[str, Any] = {
        "version": "0.3", "name": "shared",
        "secrets": [{"name": "db_password", "kind": "ascii", "size": 16,
                     "export": [{"session": f"s{i}"} for i in range(n)]}],
    }
    out = [shared]
    for i in range(n):
        doc = session(name=f"s{i}")
        doc["services"][0]["environment"]["DB_PASSWORD"] = "$$SCONE::db_password$$"
        doc["secrets"].append({"name": "db_password", "import": {"session": "shared"}})
        out.append(doc)
    return out


def counts(rig: Rig) -> dict[str, int]:
    return {t: int(rig.sql(f"SELECT count(*) FROM {t}")[0][0]) for t in TABLES}


def env(rig: Rig, name: str) -> dict[str, str]:
    r = rig.launcher.attest(f"{NS}/{name}/app")
    assert r.status_code == 200, r.text
    return dict(r.json()["env"])


def test_all_or_nothing_one_entry_per_session_and_authenticated_rows(any_rig: Rig) -> None:
    rig = any_rig
    docs = mesh(N)
    empty = counts(rig)
    # refused: the last session names a predecessor that does not exist
    bad = [*docs[:-1], {**docs[-1], "predecessor": "0" * 64}]
    with pytest.raises(UserError) as err:
        rig.alice.transaction(NS, bad)
    assert f"session {NS}/s{N - 1}" in err.value.message
    assert counts(rig) == empty  # nothing of the other sessions was written
    assert rig.events("create") == []

    written = rig.alice.transaction(NS, docs)
    assert [w["name"] for w in written] == [d["name"] for d in docs]
    created = rig.events("create")
    assert sorted(e["session"] for e in created) == sorted(d["name"] for d in docs)
    assert all(e["namespace"] == NS and e["version"] == 1 for e in created)
    assert counts(rig) == {"namespaces": 1, "session_heads": N + 1, "session_versions": N + 1,
                           "secrets": 1 + N, "exports": N}
    assert rig.verify().returncode == 0
    first = {name: env(rig, name) for name in ("s0", f"s{N - 1}")}
    # the global secret is one value; each session's own secret is its own
    assert first["s0"]["DB_PASSWORD"] == first[f"s{N - 1}"]["DB_PASSWORD"]
    assert first["s0"]["API_PASSWORD"] != first[f"s{N - 1}"]["API_PASSWORD"]

    # an update of a third of the sessions: one entry each, secrets kept
    heads = {w["name"]: w["hash"] for w in written}
    old_head = rig.sql("SELECT version, hash, mac FROM session_heads WHERE name = 's0'")[0]
    changed = []
    for d in docs[1: 1 + N // 3]:
        new = copy.deepcopy(d)
        new["services"][0]["environment"]["API_USER"] = "someone else"
        changed.append({**new, "predecessor": heads[d["name"]]})
    second = rig.alice.transaction(NS, changed)
    assert {w["version"] for w in second} == {2}
    # the same updates again, from the new versions: nothing changes, no version is written
    same = [{**d, "predecessor": w["hash"]} for d, w in zip(changed, second, strict=True)]
    assert rig.alice.transaction(NS, same) == second
    with pytest.raises(UserError, match="409"):  # ... but only from the current version
        rig.alice.transaction(NS, changed)
    updated = rig.events("update")
    assert sorted(e["session"] for e in updated) == sorted(d["name"] for d in changed)
    assert all(e["version"] == 2 and e["secrets"] == [] for e in updated)
    assert rig.verify().returncode == 0
    again = env(rig, "s0")
    assert again["API_USER"] == "someone else"
    assert again["DB_PASSWORD"] == first["s0"]["DB_PASSWORD"]
    assert again["API_PASSWORD"] == first["s0"]["API_PASSWORD"]

    # a head the transaction wrote, put back to its first version: detected
    rig.sql("UPDATE session_heads SET version = ?, hash = ?, mac = ? WHERE name = 's0'",
            *old_head)
    rig.restart()
    _refused_as_tampered(rig.launcher.attest(f"{NS}/s0/app"),
                         "does not match its authenticated state")


def _fields(snap: Any) -> tuple[Any, ...]:
    return (snap.digest, snap.owners, snap.heads, snap.head_macs, snap.secrets, snap.exports)


def test_the_state_a_write_leaves_is_the_state_a_full_read_verifies(tmp_path: Path) -> None:
    """After a write CAS keeps the snapshot it derived (the one it verified plus its own rows)
    instead of reading and verifying every row again: it must be exactly what a fresh read of
    the database gives, through creates, updates, removed secrets and removed exports."""
    from veil.cas import batch, sessions
    from veil.cas.core import Cas
    from veil.cas.integrity import load_snapshot, read_state
    from veil.cas.state import init_state, load_keyring
    from veil.cas.store import make_engine, make_reader, write_gate
    from veil.session.load import session_from_data

    files = init_state(tmp_path / "state", ["127.0.0.1"])
    url = f"sqlite:///{tmp_path / 'state' / 'cas.db'}"
    engine = make_engine(url)
    cas = Cas(engine, load_keyring(files), make_reader(url, engine), write_gate(url))

    def check() -> None:
        kept = cas.last_snapshot
        assert kept is not None and cas.snapshot() is kept  # used, not read again
        with engine.connect() as conn:
            fresh = load_snapshot(conn, cas.integrity, read_state(conn))
        assert _fields(kept) == _fields(fresh)

    def docs(items: list[dict[str, Any]]) -> list[Any]:
        return [session_from_data(d, file="t") for d in items]

    written = batch.commit(cas, NS, docs(mesh(4)), "alice")
    check()
    heads = {w.name: w.hash for w in written}
    shared = mesh(4)[0]
    shared["secrets"][0]["export"] = shared["secrets"][0]["export"][:2]  # two exports go
    s3 = mesh(4)[4]  # s3 no longer imports, and loses its own secret
    s3["secrets"] = []
    s3["services"][0]["environment"] = {"API_USER": "x"}
    s3["services"][0]["command"] = "python3 app.py"
    s3["images"][0]["injection_files"] = []
    batch.commit(cas, NS, docs([{**shared, "predecessor": heads["shared"]},
                                {**s3, "predecessor": heads["s3"]}]), "alice")
    check()
    sessions.create(cas, "other", session_from_data(session(name="one"), file="t"), "bob")
    check()
    one = cas.head("other", "one")
    assert one is not None
    sessions.update(cas, "other", session_from_data(
        {**session(name="one"), "predecessor": one.hash, "secrets": [],
         "services": [], "images": []}, file="t"), "bob")
    check()
