"""The audit log: every create/update/read/attest/provision/denial, in one hash chain.

Each entry's MAC is HMAC-SHA256 (under a key derived from the master key) over the previous MAC
and the entry's canonical JSON, so changing, inserting or removing an entry breaks the chain, and
rewriting the chain needs the master key, which the database never holds. `audit_head` records
the last sequence number and MAC, so removing entries from the end is detected too. Entries never
hold a secret value: only names, identities, hashes, outcomes and reasons.
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
from veil.cas.store import GENESIS, audit, audit_head

__all__ = ["AuditReport", "append", "lock_head", "verify"]


def _mac(key: bytes, prev: str, entry: str) -> str:
    return hmac.new(key, f"{prev}\n{entry}".encode(), hashlib.sha256).hexdigest()


_HEAD_SQL = "SELECT seq, mac FROM audit_head WHERE id = 1"
_INSERT_SQL = "INSERT INTO audit (seq, entry, prev, mac) VALUES (:seq, :entry, :prev, :mac)"
_MOVE_SQL = "UPDATE audit_head SET seq = :seq, mac = :mac WHERE id = 1"


def lock_head(conn: Connection) -> None:
    """Take the audit head's row lock now (PostgreSQL; SQLite's write lock is already held),
    before the transaction writes anything else."""
    fastsql.execute(conn, _HEAD_SQL + fastsql.for_update(conn)).fetchone()


def append(conn: Connection, key: bytes, event: str, **fields: Any) -> int:
    """Append one entry inside the caller's transaction; returns its sequence number.

    The head row is read with a row lock (PostgreSQL) or under SQLite's write lock, so
    concurrent appends from any replica form one chain."""
    prev_seq, prev_mac = fastsql.execute(conn, _HEAD_SQL + fastsql.for_update(conn)).fetchone()
    seq = int(prev_seq) + 1
    data = {"event": event, "seq": seq, "time": dt.datetime.now(dt.UTC).isoformat(), **fields}
    entry = json.dumps(data, sort_keys=True, separators=(",", ":"))
    mac = _mac(key, prev_mac, entry)
    fastsql.execute(conn, _INSERT_SQL, {"seq": seq, "entry": entry, "prev": prev_mac, "mac": mac})
    fastsql.execute(conn, _MOVE_SQL, {"seq": seq, "mac": mac})
    return seq


@dataclass
class AuditReport:
    entries: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(engine: Engine, key: bytes) -> AuditReport:
    """Walk the chain from the start; list every break."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    n = 0
    with engine.connect() as conn:
        head = conn.execute(select(audit_head.c.seq, audit_head.c.mac)).one()
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
    if head.seq != expected_seq - 1 or head.mac != prev:
        problems.append(
            f"the log ends at entry {expected_seq - 1} but CAS wrote {head.seq} entries "
            "(entries at the end were removed or the head was changed)"
        )
    return AuditReport(entries=n, problems=problems)
