"""Fast tests of the rows' authentication and the rollback counter, in process on a real SQLite
file edited with `sqlite3` as an attacker with write access to the database would: every
authenticated row, a removed or put-back row, the state row, the counter file. scripts/mutation.sh
runs them against every mutant of `veil/cas/integrity.py`; the same attacks run against a
server in test_integrity.py."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cas.helpers import session
from veil.cas import sessions
from veil.cas.core import Cas
from veil.cas.integrity import Counter, FileCounter, Tampered, check_rows, read_state
from veil.cas.state import init_state, load_keyring
from veil.cas.store import make_engine, make_reader, write_gate
from veil.session.load import session_from_data


def _exporter() -> dict[str, Any]:
    secret = {"name": "password", "kind": "ascii", "size": 10,
              "export": [{"session": "app", "namespace": "ns"}]}
    return session(name="src", secrets=[secret])


def _v2(doc: dict[str, Any], predecessor: str) -> dict[str, Any]:
    doc["services"][0]["environment"]["API_USER"] = "v2"
    return {**doc, "predecessor": predecessor}


def _new_cas(root: Path, counter: Counter | None = None) -> Cas:
    files = init_state(root, ["127.0.0.1"]) if not (root / "cas.db").exists() else None
    url = f"sqlite:///{root / 'cas.db'}"
    engine = make_engine(url)
    keys = load_keyring(files) if files else _keys[root]
    _keys[root] = keys
    return Cas(engine, keys, make_reader(url, engine), write_gate(url), counter=counter)


_keys: dict[Path, object] = {}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """A state dir with a namespace, two sessions, an export and an update."""
    root = tmp_path / "state"
    cas = _new_cas(root)
    sessions.create(cas, "ns", session_from_data(_exporter(), file="t"), "alice")
    sessions.create(cas, "ns", session_from_data(session(), file="t"), "alice")
    head = cas.head("ns", "hello")
    assert head is not None
    sessions.update(cas, "ns", session_from_data(_v2(session(), head.hash), file="t"), "alice")
    cas.engine.dispose()
    cas.r.dispose()
    yield root / "cas.db"
    _keys.pop(root, None)


def _fresh(db: Path) -> Cas:
    return _new_cas(db.parent)


def _edit(db: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute(sql, args).rowcount >= 1, sql


def test_an_intact_database_verifies(db: Path) -> None:
    cas = _fresh(db)
    snap = cas.snapshot()
    assert snap.owners == {"ns": "alice"}
    assert set(snap.heads) == {("ns", "src"), ("ns", "hello")}
    head = snap.heads[("ns", "hello")]
    assert (head.version, head.creator) == (2, "alice")
    assert [k[3:] for k in snap.exports] == [("ns", "app")]
    assert next(iter(snap.exports.values()))[0] == "alice"
    assert set(snap.secrets) == {("ns", "src", "password"), ("ns", "hello", "password")}
    with cas.engine.connect() as conn:
        assert check_rows(conn, cas.integrity) == []
        state = read_state(conn)
    assert state.digest == snap.digest and state.seq > 0 and len(state.last) == 64


@pytest.mark.parametrize(("sql", "what"), [
    ("UPDATE namespaces SET owner = 'mallory'", "row namespaces/ns was changed"),
    ("UPDATE session_heads SET creator = 'mallory' WHERE name = 'hello'",
     "row session_heads/ns/hello was changed"),
    ("UPDATE session_heads SET version = 1 WHERE name = 'hello'",
     "row session_heads/ns/hello was changed"),
    ("UPDATE exports SET owner = 'mallory'", "row exports/ns/src/password/ns/app was changed"),
    ("UPDATE exports SET target_session = 'other'",
     "row exports/ns/src/password/ns/other was changed"),
    ("DELETE FROM exports", "does not match its authenticated state"),
    ("DELETE FROM secrets WHERE session = 'hello'", "does not match its authenticated state"),
    ("DELETE FROM audit_head", "removed"),
    ("UPDATE audit_head SET digest = '" + "0" * 64 + "'", "changed outside CAS"),
])
def test_a_changed_or_removed_row_is_refused(db: Path, sql: str, what: str) -> None:
    _edit(db, sql)
    with pytest.raises(Tampered, match=what):
        _fresh(db).snapshot()


def test_every_changed_row_is_named_up_to_five(db: Path) -> None:
    cas = _fresh(db)
    for i in range(7):
        sessions.create(cas, f"n{i}", session_from_data(session(), file="t"), "alice")
    _edit(db, "UPDATE namespaces SET owner = 'mallory'")
    with pytest.raises(Tampered) as err:
        _fresh(db).snapshot()
    assert err.value.reason.count("was changed") == 5 and err.value.reason.endswith(
        "(and 3 more)")


def test_a_session_put_back_to_its_older_version_is_refused(db: Path) -> None:
    """Both rows of the old head, MAC included, restored: each row is authentic, the set is
    not the one the state row authenticates."""
    cas = _fresh(db)
    with sqlite3.connect(db) as conn:
        old = conn.execute("SELECT version, hash, mac FROM session_heads WHERE name = 'src'"
                           ).fetchone()
    src = cas.head("ns", "src")
    assert src is not None
    sessions.update(cas, "ns", session_from_data(_v2(_exporter(), src.hash), file="t"), "alice")
    _edit(db, "UPDATE session_heads SET version = ?, hash = ?, mac = ? WHERE name = 'src'", *old)
    with pytest.raises(Tampered, match="does not match its authenticated state"):
        _fresh(db).snapshot()


def test_changed_documents_and_sealed_values_are_found_by_the_full_check(db: Path) -> None:
    _edit(db, "UPDATE session_versions SET document = replace(document, 'debug', 'production') "
              "WHERE name = 'hello' AND version = 2")
    _edit(db, "UPDATE secrets SET fingerprint = 'x' WHERE session = 'src'")
    cas = _fresh(db)
    with cas.engine.connect() as conn:
        problems = check_rows(conn, cas.integrity)
    assert problems == ["row secrets/ns/src/password was changed outside CAS (its MAC does not "
                        "match)", "row session_versions/ns/hello/2 was changed outside CAS (its "
                        "MAC does not match)"]


def test_a_rolled_back_database_is_refused_by_the_counter(db: Path, tmp_path: Path) -> None:
    counter_file = tmp_path / "counter"
    store = FileCounter(counter_file)
    backup = tmp_path / "backup.db"
    shutil.copy(db, backup)
    cas = _new_cas(db.parent, Counter(store))
    sessions.create(cas, "ns2", session_from_data(session(), file="t"), "alice")  # durable
    high = int(counter_file.read_text())
    assert high == cas.integrity.counter.high > 0
    cas.engine.dispose()
    cas.r.dispose()
    for wal in db.parent.glob("cas.db-*"):
        wal.unlink()
    shutil.copy(backup, db)  # the whole database put back to an older, consistent copy
    later = _new_cas(db.parent, Counter(FileCounter(counter_file)))
    with pytest.raises(Tampered, match=f"rolled back: .* but this CAS has seen entry {high}"):
        later.snapshot()


def test_the_counter_file(tmp_path: Path) -> None:
    store = FileCounter(tmp_path / "counter")
    assert store.load() == 0
    assert store.raise_to(5) == 5 and store.raise_to(3) == 5 and store.load() == 5
    assert (tmp_path / "counter").read_text() == "5\n"
    assert stat.S_IMODE(os.stat(tmp_path / "counter").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "counter.lock").st_mode) == 0o600
    (tmp_path / "counter").write_text("five\n")
    with pytest.raises(Tampered, match="does not hold a number"):
        store.load()


def test_the_counter_rises_and_persists(tmp_path: Path) -> None:
    store = FileCounter(tmp_path / "counter")
    store.raise_to(4)
    c = Counter(store, interval=0.05)
    assert c.high == 4 and c.floor() == 4
    c.saw(3)
    assert c.high == 4
    c.saw(9)
    assert c.high == 9 and store.load() == 4  # in memory at once
    with pytest.raises(Tampered, match="rolled back"):
        c.check(8, c.floor())
    c.check(9, 9)
    c.committed(10, durable=True)
    assert store.load() == 10  # before the answer
    c.committed(12, durable=False)
    deadline = time.monotonic() + 5
    while store.load() != 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.load() == 12  # by the background thread
    assert any(t.name == "veil-cas-counter" and t.daemon for t in threading.enumerate())
    assert Counter().high == 0 and Counter().store is None


def test_the_full_check_lists_what_the_snapshot_refuses(db: Path) -> None:
    """`veil cas audit verify` lists every problem instead of stopping at the first."""
    _edit(db, "UPDATE namespaces SET owner = 'mallory'")
    _edit(db, "UPDATE secrets SET fingerprint = 'x' WHERE session = 'src'")
    cas = _fresh(db)
    with cas.engine.connect() as conn:
        problems = check_rows(conn, cas.integrity)
    assert len(problems) == 2 and "row namespaces/ns was changed" in problems[0]
    assert Tampered("x").status == 500  # the answer CAS gives a request that meets it
