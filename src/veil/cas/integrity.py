"""Row authentication and rollback detection: the database is trusted no more than its key.

Whoever can write CAS's database must not be able to change what CAS decides. So:

- every row CAS relies on carries a MAC (HMAC-SHA256 under a key derived from the master key)
  over its table name and content: namespaces (owner), session heads (version, hash, creator),
  session versions (the document), sealed secrets, exports (the bound owner), and the state row;
  a changed row fails its MAC and is refused;
- a row put back to an older value of its own still has a valid MAC, so the MACs of the
  namespaces, heads, secrets and exports are also summed into one *state digest*: the XOR of
  HMAC(member key, row MAC) over the rows (a PRF under a key that is nowhere in the database,
  so nobody without it can compute or cancel a row's contribution). A write adds and removes
  its rows' contributions without reading the others. The digest is kept in the one state row
  (`audit_head`) together with the audit log's end and that row's own MAC; a worker verifies
  every row against it whenever the digest changes, and then serves heads, owners and exports
  from that verified snapshot until the next change;
- the state row itself can still be put back to an older copy (or the whole database to an
  older consistent backup): its audit sequence number then goes back, which is detected against
  the highest sequence number this CAS has seen, kept outside the database (`Counter`: a file
  beside the master key, or a data object in the PKCS#11 token that holds it).

What this does not cover: `used_nonces` (a deleted used nonce can be replayed within the
nonce's 60 s lifetime; each worker also remembers the nonces it used), `clients` (registration
grants nothing), and the high-water mark is persisted at every session change and when CAS
stops, but only every half second for audit-only appends: when CAS is killed (not stopped),
up to the last half second of audit entries can be cut while it is down.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection

from veil.cas import fastsql
from veil.fsutil import atomic_write_text

__all__ = [
    "ZERO",
    "Counter",
    "CounterStore",
    "FileCounter",
    "Head",
    "Integrity",
    "Snapshot",
    "State",
    "Tampered",
    "from_keys",
    "load_snapshot",
    "read_state",
]

ZERO = "0" * 64
_STATE_SQL = "SELECT seq, mac, digest, row_mac FROM audit_head WHERE id = 1"


class Tampered(Exception):
    """A row of the database was changed, removed, added or rolled back outside CAS."""

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Head:
    namespace: str
    name: str
    version: int
    hash: str
    creator: str


class CounterStore(Protocol):
    """Where the high-water mark lives outside the database."""

    def load(self) -> int: ...

    def raise_to(self, value: int) -> int:
        """Store max(stored, value); return the stored value."""
        ...


class FileCounter:
    """A decimal number in a file beside the master key, replaced atomically under `flock`
    (several worker processes raise it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    def load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return int(text)
        except ValueError:
            raise Tampered(f"{self.path} does not hold a number") from None

    def raise_to(self, value: int) -> int:
        fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stored = self.load()
            if value > stored:
                atomic_write_text(self.path, f"{value}\n", 0o600)
                stored = value
            return stored
        finally:
            os.close(fd)


class Counter:
    """The highest audit sequence number this CAS has seen committed. A state row with a
    lower one is a rollback. Raised in memory at once; persisted before the answer of every
    commit that changed sessions (`durable`), else by a background thread every `interval`
    seconds (a synchronous write with fsync on the attestation path cost the latency tail)."""

    def __init__(self, store: CounterStore | None = None, interval: float = 0.5) -> None:
        self.store = store
        self.high = store.load() if store is not None else 0
        self._saved = self.high
        self._interval = interval
        self._lock = threading.Lock()
        self._pid = 0

    def floor(self) -> int:
        """Take this before reading the state row: what was committed before the read began."""
        return self.high

    def check(self, seq: int, floor: int) -> None:
        if seq < floor:
            raise Tampered(
                f"the CAS database was rolled back: its audit log ends at entry {seq}, but "
                f"this CAS has seen entry {floor} (a restored backup? see docs/cas.md)"
            )

    def saw(self, seq: int) -> None:
        if seq > self.high:
            self.high = seq

    def flush(self) -> None:
        """Persist what was seen (at shutdown, and from the background thread)."""
        if self.store is not None and self.high > self._saved:
            with self._lock:
                self._saved = max(self._saved, self.store.raise_to(self.high))

    def _background(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self.flush()
            except Exception as err:  # keep trying: the next round may succeed
                print(f"veil cas: cannot persist the rollback counter: {err}", flush=True)

    def committed(self, seq: int, durable: bool) -> None:
        self.saw(seq)
        if self.store is None:
            return
        if durable:
            self.flush()
        elif self._pid != os.getpid():  # started lazily, again in a forked worker
            self._pid = os.getpid()
            threading.Thread(target=self._background, name="veil-cas-counter", daemon=True).start()


@dataclass(frozen=True)
class State:
    seq: int
    last: str  # MAC of the last audit entry
    digest: str
    row_mac: str


@dataclass(frozen=True)
class Snapshot:
    """Every authenticated row but the sealed values, verified against one state digest."""

    digest: str
    owners: dict[str, str] = field(default_factory=dict)
    heads: dict[tuple[str, str], Head] = field(default_factory=dict)
    head_macs: dict[tuple[str, str], str] = field(default_factory=dict)
    secrets: dict[tuple[str, str, str], str] = field(default_factory=dict)  # -> row MAC
    # (namespace, session, secret, target namespace, target session) -> (owner, row MAC)
    exports: dict[tuple[str, str, str, str, str], tuple[str, str]] = field(default_factory=dict)

    # by session, built once per snapshot (a snapshot is not changed after it was loaded):
    # a lookup per written or provisioned session must not walk every row of every session
    @functools.cached_property
    def secrets_of(self) -> dict[tuple[str, str], dict[str, str]]:
        """(namespace, session) -> secret name -> row MAC."""
        out: dict[tuple[str, str], dict[str, str]] = {}
        for (ns, session, name), mac in self.secrets.items():
            out.setdefault((ns, session), {})[name] = mac
        return out

    @functools.cached_property
    def exports_of(
        self,
    ) -> dict[tuple[str, str], dict[tuple[str, str, str, str, str], tuple[str, str]]]:
        """(namespace, session) -> that session's exports (key -> (owner, row MAC))."""
        out: dict[tuple[str, str], dict[tuple[str, str, str, str, str], tuple[str, str]]] = {}
        for k, v in self.exports.items():
            out.setdefault((k[0], k[1]), {})[k] = v
        return out


@dataclass
class Integrity:
    rows_key: bytes
    members_key: bytes
    audit_key: bytes
    counter: Counter = field(default_factory=Counter)

    def mac(self, table: str, *values: Any) -> str:
        blob = json.dumps([table, *values], separators=(",", ":"), ensure_ascii=True)
        return hmac.new(self.rows_key, blob.encode(), hashlib.sha256).hexdigest()

    def _member(self, row_mac: str) -> int:
        d = hmac.new(self.members_key, row_mac.encode(), hashlib.sha256).digest()
        return int.from_bytes(d, "big")

    def delta(self, added: Iterable[str] = (), removed: Iterable[str] = ()) -> int:
        """What adding and removing these rows (by their MACs) does to the digest."""
        out = 0
        for m in (*added, *removed):
            out ^= self._member(m)
        return out

    def fold(self, digest: str, delta: int) -> str:
        return f"{int(digest, 16) ^ delta:064x}"

    def state_mac(self, seq: int, last: str, digest: str) -> str:
        return self.mac("state", seq, last, digest)

    def check_state(self, state: State, floor: int) -> None:
        genesis = state.seq == 0 and state.row_mac == "" and state.digest == ZERO
        if not genesis and not hmac.compare_digest(
            state.row_mac, self.state_mac(state.seq, state.last, state.digest)
        ):
            raise Tampered(
                "the CAS state row (audit_head) was changed outside CAS (its MAC does not match)"
            )
        self.counter.check(state.seq, floor)

    # the rows, each with its MAC
    def namespace_row(self, name: str, owner: str, created: str) -> dict[str, Any]:
        return {
            "name": name,
            "owner": owner,
            "created": created,
            "mac": self.mac("namespaces", name, owner),
        }

    def head_row(
        self, namespace: str, name: str, version: int, h: str, creator: str
    ) -> dict[str, Any]:
        mac = self.mac("session_heads", namespace, name, version, h, creator)
        return {
            "namespace": namespace,
            "name": name,
            "version": version,
            "hash": h,
            "creator": creator,
            "mac": mac,
        }

    def version_mac(
        self,
        namespace: str,
        name: str,
        version: int,
        h: str,
        predecessor: str | None,
        document: str,
        author: str,
    ) -> str:
        return self.mac(
            "session_versions", namespace, name, version, h, predecessor, document, author
        )

    def secret_mac(
        self, namespace: str, session: str, name: str, kind: str, fp: str, sealed: bytes
    ) -> str:
        return self.mac("secrets", namespace, session, name, kind, fp, sealed.hex())

    def export_mac(self, key: tuple[str, str, str, str, str], owner: str) -> str:
        return self.mac("exports", *key, owner)


def from_keys(keys: Any, counter: Counter | None = None) -> Integrity:
    """From a `veil.cas.state.Keyring`."""
    return Integrity(keys.rows, keys.members, keys.audit, counter or Counter())


def read_state(conn: Connection, lock: bool = False) -> State:
    suffix = fastsql.for_update(conn) if lock else ""
    row = fastsql.execute(conn, _STATE_SQL + suffix).fetchone()
    if row is None:
        raise Tampered("the CAS state row (audit_head) was removed")
    return State(int(row[0]), row[1], row[2], row[3])


def _bad(table: str, key: tuple[Any, ...]) -> str:
    where = "/".join(map(str, key))
    return f"row {table}/{where} was changed outside CAS (its MAC does not match)"


def load_snapshot(conn: Connection, integ: Integrity, state: State) -> Snapshot:
    """Read and verify every authenticated row (but the sealed values, which are checked
    against their MACs when opened) in `conn`'s transaction, which read `state`."""
    snap = Snapshot(state.digest)
    problems: list[str] = []
    macs: list[str] = []
    q = fastsql.execute
    for name, owner, mac in q(conn, "SELECT name, owner, mac FROM namespaces"):
        if not hmac.compare_digest(mac, integ.mac("namespaces", name, owner)):
            problems.append(_bad("namespaces", (name,)))
        snap.owners[name] = owner
        macs.append(mac)
    for ns, name, version, h, creator, mac in q(
        conn, "SELECT namespace, name, version, hash, creator, mac FROM session_heads"
    ):
        if not hmac.compare_digest(mac, integ.mac("session_heads", ns, name, version, h, creator)):
            problems.append(_bad("session_heads", (ns, name)))
        snap.heads[(ns, name)] = Head(ns, name, int(version), h, creator)
        snap.head_macs[(ns, name)] = mac
        macs.append(mac)
    for ns, session, name, mac in q(conn, "SELECT namespace, session, name, mac FROM secrets"):
        snap.secrets[(ns, session, name)] = mac
        macs.append(mac)
    for *key, owner, mac in q(
        conn,
        "SELECT namespace, session, secret, target_namespace, target_session, owner, mac "
        "FROM exports",
    ):
        k = (key[0], key[1], key[2], key[3], key[4])
        if not hmac.compare_digest(mac, integ.export_mac(k, owner)):
            problems.append(_bad("exports", k))
        snap.exports[k] = (owner, mac)
        macs.append(mac)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise Tampered("; ".join(problems[:5]) + more)
    if integ.fold(ZERO, integ.delta(macs)) != state.digest:
        raise Tampered(
            "the CAS database does not match its authenticated state: a row was removed, "
            "added, or put back to an older version (a session or namespace rolled back?)"
        )
    return snap


def check_rows(conn: Connection, integ: Integrity) -> list[str]:
    """Every authenticated row against its MAC and the state (for `veil cas audit verify`):
    the problems found, empty when the database is intact."""
    problems: list[str] = []
    try:
        state = read_state(conn)
        load_snapshot(conn, integ, state)
    except Tampered as err:
        problems.append(err.reason)
    for ns, session, name, kind, fp, sealed, mac in fastsql.execute(
        conn, "SELECT namespace, session, name, kind, fingerprint, sealed, mac FROM secrets"
    ):
        if not hmac.compare_digest(
            mac, integ.secret_mac(ns, session, name, kind, fp, bytes(sealed))
        ):
            problems.append(_bad("secrets", (ns, session, name)))
    for ns, name, version, h, pred, doc, author, mac in fastsql.execute(
        conn,
        "SELECT namespace, name, version, hash, predecessor, document, author, mac "
        "FROM session_versions",
    ):
        if not hmac.compare_digest(mac, integ.version_mac(ns, name, version, h, pred, doc, author)):
            problems.append(_bad("session_versions", (ns, name, version)))
    return problems
