"""The audit chain detects changed, removed and truncated entries."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, update

from veil.cas import audit
from veil.cas.integrity import Integrity
from veil.cas.store import audit as audit_t
from veil.cas.store import make_engine

KEY = Integrity(b"r" * 32, b"m" * 32, b"a" * 32)


def _log(tmp_path: Path, n: int = 5):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    for i in range(n):
        with engine.begin() as conn:
            audit.append(conn, KEY, "read", session=f"s{i}", outcome="ok")
    return engine


def test_intact_chain(tmp_path: Path) -> None:
    report = audit.verify(_log(tmp_path), KEY)
    assert report.ok and report.entries == 5


def test_changed_entry(tmp_path: Path) -> None:
    engine = _log(tmp_path)
    with engine.begin() as conn:
        conn.execute(
            update(audit_t).where(audit_t.c.seq == 3).values(entry=audit_t.c.entry.op("||")(" "))
        )
    report = audit.verify(engine, KEY)
    assert not report.ok and any("entry 3" in p for p in report.problems)


def test_removed_entry(tmp_path: Path) -> None:
    engine = _log(tmp_path)
    with engine.begin() as conn:
        conn.execute(delete(audit_t).where(audit_t.c.seq == 2))
    report = audit.verify(engine, KEY)
    assert not report.ok and any("missing" in p for p in report.problems)


def test_truncated_tail(tmp_path: Path) -> None:
    engine = _log(tmp_path)
    with engine.begin() as conn:
        conn.execute(delete(audit_t).where(audit_t.c.seq == 5))
    assert not audit.verify(engine, KEY).ok


def test_wrong_key_fails(tmp_path: Path) -> None:
    assert not audit.verify(_log(tmp_path), Integrity(b"r" * 32, b"m" * 32, b"b" * 32)).ok
