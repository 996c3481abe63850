"""The audit log: every create/update/read/attest/provision/denial, in one hash chain.

Each entry's MAC is HMAC-SHA256 (under a key derived from the master key) over the previous MAC
and the entry's canonical JSON, so changing, inserting or removing an entry breaks the chain, and
rewriting the chain needs the master key, which the database never holds. `audit_head` records
the last sequence number and MAC under a MAC of its own, and its sequence number is checked
against the high-water mark kept outside the database (`veil.cas.integrity`), so cutting entries
from the end, or emptying the log, is detected too. Entries never hold a secret value: only
names, identities, hashes, outcomes and reasons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from veil.cas import fastsql
from veil.cas.integrity import Integrity, State, Tampered, check_rows, read_state
from veil.cas.store import GENESIS, audit

__all__ = ["AuditReport", "append", "lock_head", "verify"]


def _mac(key: bytes, prev: str, entry: str) -> str:
    return hmac.new(key, f"{prev}\n{entry}".encode(), hashlib.sha256).hexdigest()


_INSERT_SQL = "INSERT INTO audit (seq, entry, prev, mac) VALUES (:seq, :entry, :prev, :mac)"
_MOVE_SQL = (
    "UPDATE audit_head SET seq = :seq, mac = :mac, digest = :digest, row_mac = :row_mac "
    "WHERE id = 1"
)
# in the connection's info: (last sequence number written, whether sessions changed), read by
# whoever commits the transaction (`committed`)
PENDING = "veil_audit_pending"


def lock_head(conn: Connection) -> None:
    """Take the audit head's row lock now (PostgreSQL; SQLite's write lock is already held),
    before the transaction writes anything else."""
    read_state(conn, lock=True)


def append(conn: Connection, integ: Integrity, event: str, delta: int = 0, **fields: Any) -> int:
    """Append one entry inside the caller's transaction; returns its sequence number. `delta`
    is what the transaction's row writes do to the state digest (`Integrity.delta`).

    The head row is read with a row lock (PostgreSQL) or under SQLite's write lock, so
    concurrent appends from any replica form one chain; it must carry its MAC and must not be
    older than what this CAS has seen (else `Tampered`)."""
    floor = integ.counter.floor()
    state = read_state(conn, lock=True)
    integ.check_state(state, floor)
    seq = state.seq + 1
    data = {"event": event, "seq": seq, "time": dt.datetime.now(dt.UTC).isoformat(), **fields}
    entry = json.dumps(data, sort_keys=True, separators=(",", ":"))
    mac = _mac(integ.audit_key, state.last, entry)
    digest = integ.fold(state.digest, delta) if delta else state.digest
    fastsql.execute(conn, _INSERT_SQL, {"seq": seq, "entry": entry, "prev": state.last, "mac": mac})
    row_mac = integ.state_mac(seq, mac, digest)
    fastsql.execute(conn, _MOVE_SQL, {"seq": seq, "mac": mac, "digest": digest, "row_mac": row_mac})
    _, changed = conn.info.get(PENDING, (0, False))
    conn.info[PENDING] = (seq, changed or bool(delta))
    return seq


def append_many(
    conn: Connection, integ: Integrity, entries: list[tuple[str, dict[str, Any]]], delta: int = 0
) -> int:
    """Append several entries (event, fields) inside the caller's transaction, one after the
    other in the chain exactly as `append` would, with one insert of all of them and one move
    of the head; `delta` is what the transaction's row writes together do to the state digest.
    Returns the last sequence number (the head's, when `entries` is empty)."""
    floor = integ.counter.floor()
    state = read_state(conn, lock=True)
    integ.check_state(state, floor)
    if not entries:
        return state.seq
    seq, prev = state.seq, state.last
    time = dt.datetime.now(dt.UTC).isoformat()
    rows: list[dict[str, Any]] = []
    for event, fields in entries:
        seq += 1
        data = {"event": event, "seq": seq, "time": time, **fields}
        entry = json.dumps(data, sort_keys=True, separators=(",", ":"))
        mac = _mac(integ.audit_key, prev, entry)
        rows.append({"seq": seq, "entry": entry, "prev": prev, "mac": mac})
        prev = mac
    digest = integ.fold(state.digest, delta) if delta else state.digest
    fastsql.executemany(conn, _INSERT_SQL, rows)
    row_mac = integ.state_mac(seq, prev, digest)
    fastsql.execute(
        conn, _MOVE_SQL, {"seq": seq, "mac": prev, "digest": digest, "row_mac": row_mac}
    )
    _, changed = conn.info.get(PENDING, (0, False))
    conn.info[PENDING] = (seq, changed or bool(delta))
    return seq


def pending(conn: Connection) -> tuple[int, bool] | None:
    """Take what this transaction appended (call just before it commits)."""
    out: tuple[int, bool] | None = conn.info.pop(PENDING, None)
    return out


@dataclass
class AuditReport:
    entries: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(engine: Engine, integ: Integrity) -> AuditReport:
    """Walk the chain from the start; list every break, and check the head row (its MAC, and
    its sequence number against the high-water mark kept outside the database) and every
    authenticated row of the database (`veil.cas.integrity.check_rows`)."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    n = 0
    key = integ.audit_key
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.begin()  # one consistent view, while CAS may be writing
        floor = integ.counter.floor()
        head: State = read_state(conn)
        try:
            integ.check_state(head, floor)
        except Tampered as err:
            problems.append(err.reason)
        problems.extend(check_rows(conn, integ))
        rows = conn.execution_options(yield_per=1000).execute(
            select(audit.c.seq, audit.c.entry, audit.c.prev, audit.c.mac).order_by(audit.c.seq)
        )
        for row in rows:
            n += 1
            if row.seq != expected_seq:
                problems.append(f"entries {expected_seq}..{row.seq - 1} are missing")
            if row.prev != prev:
                problems.append(f"entry {row.seq}: does not follow the entry before it")
            if not hmac.compare_digest(_mac(key, row.prev, row.entry), row.mac):
                problems.append(f"entry {row.seq}: content was changed (MAC does not match)")
            try:
                if json.loads(row.entry).get("seq") != row.seq:
                    problems.append(f"entry {row.seq}: renumbered")
            except ValueError:
                problems.append(f"entry {row.seq}: not valid JSON")
            prev = row.mac
            expected_seq = row.seq + 1
    if head.seq != expected_seq - 1 or head.last != prev:
        problems.append(
            f"the log ends at entry {expected_seq - 1} but CAS wrote {head.seq} entries "
            "(entries at the end were removed or the head was changed)"
        )
    return AuditReport(entries=n, problems=problems)
