"""What every CAS operation shares: the database, the keys, the refusal type, access checks."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Connection, Engine

from veil.cas import audit, fastsql
from veil.cas.groupcommit import GroupCommit
from veil.cas.integrity import (
    Counter,
    Head,
    Integrity,
    Snapshot,
    Tampered,
    from_keys,
    load_snapshot,
    read_state,
)
from veil.cas.secrets import Material, open_sealed
from veil.cas.state import Keyring
from veil.cas.verifiers import Verifier
from veil.session.model import CREATOR, SessionDoc

__all__ = ["Cas", "Head", "Refusal", "Tampered", "allowed", "now_iso"]

ANY = "ANY"

_DOC_SQL = (
    "SELECT namespace, name, version, hash, predecessor, document, author, mac "
    "FROM session_versions WHERE namespace = :ns AND name = :name AND version = :v"
)
_SECRETS_SQL = (
    "SELECT name, kind, fingerprint, sealed, mac FROM secrets "
    "WHERE namespace = :ns AND session = :name"
)


CONFIG_CACHE_BYTES = 64 << 20


class ByteCache:
    """A least-recently-used cache bounded by the bytes of what it holds (as the caller
    counts them), not by the number of entries: one large configuration must not fill memory
    a thousand times over."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.limit // 4:
            return  # not worth evicting everything else for
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= old[1]
            self._items[key] = (value, size)
            self.size += size
            while self.size > self.limit:
                _, (_, n) = self._items.popitem(last=False)
                self.size -= n

    def __len__(self) -> int:
        return len(self._items)


class Refusal(Exception):
    """A request CAS turns down; `status` is the HTTP status, `reason` says why (no secrets)."""

    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def allowed(policy: list[str], identity: str | None, creator: str) -> bool:
    if ANY in policy:
        return True
    if identity is None:
        return False
    return identity in policy or (CREATOR in policy and identity == creator)


@dataclass
class Cas:
    engine: Engine  # writes (on SQLite: BEGIN IMMEDIATE)
    keys: Keyring
    reader: Engine | None = None  # reads; None = `engine`
    gate: Callable[[], AbstractContextManager[None]] | None = None  # see store.write_gate
    # the verifier of each platform; None = the built-in ones with the vendors' roots. Only
    # code that builds a Cas itself can change it (the tests, to trust roots of their own):
    # `veil cas serve` has no option or variable that reaches it.
    verifiers: Mapping[str, Verifier] | None = None
    # versions are immutable, so a parsed document is cached by its hash; materials are
    # cached by (place, fingerprint) as a sealed value only changes with its definition
    _docs: dict[str, SessionDoc] = field(default_factory=dict)
    _materials: dict[tuple[str, str], Material] = field(default_factory=dict)
    _by_version: dict[str, dict[str, Material]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    known: dict[str, float] = field(default_factory=dict)  # config id -> when seen (attest.py)
    # (version hash, namespace, session, service) -> configuration with secrets (attest.py)
    configs: ByteCache = field(default_factory=lambda: ByteCache(CONFIG_CACHE_BYTES))

    counter: Counter | None = None  # the rollback high-water mark; None: in memory only
    _committer: GroupCommit | None = None
    _integrity: Integrity | None = None
    _snapshot: Snapshot | None = None

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    @property
    def integrity(self) -> Integrity:
        if self._integrity is None:
            self._integrity = from_keys(self.keys, self.counter)
        return self._integrity

    @property
    def committer(self) -> GroupCommit:
        """Batches the write transactions of attestations (see `veil.cas.groupcommit`)."""
        if self._committer is None:
            with self._lock:
                if self._committer is None:
                    self._committer = GroupCommit(self._begin, self.gate, first=audit.lock_head)
        return self._committer

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; once it has committed, the audit sequence it reached raises the
        rollback high-water mark."""
        with self.engine.begin() as conn:
            yield conn
            done = audit.pending(conn)
        if done is not None:
            self.integrity.counter.committed(*done)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction."""
        if self.gate is None:
            with self._begin() as conn:
                yield conn
            return
        with self.gate(), self._begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction that sees one consistent state."""
        with self.r.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def audit_event(self, event: str, **fields: Any) -> None:
        """Record an event in a transaction of its own (refusals, reads)."""
        with self.write() as conn:
            audit.append(conn, self.integrity, event, **fields)

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The snapshot last verified, without reading anything (possibly stale)."""
        return self._snapshot

    def remember(self, snap: Snapshot) -> None:
        """Keep the snapshot a committed write derived from the one it verified (the state
        digest it names is the one that write stored): the next read whose state row shows
        that digest uses it instead of reading and verifying every row again."""
        self._snapshot = snap

    def cached_document(self, version_hash: str) -> SessionDoc | None:
        """The document of a version already verified and parsed, else None (no read)."""
        return self._docs.get(version_hash)

    @property
    def r(self) -> Engine:
        return self.reader or self.engine

    def snapshot(self, conn: Connection | None = None) -> Snapshot:
        """The verified rows of the current state; with `conn`, as that (write) transaction
        sees it. Raises `Tampered` when a row or the state row fails its check."""
        if conn is None:
            with self._read() as rconn:
                return self._snapshot_in(rconn, committed=True)
        return self._snapshot_in(conn, committed=False)

    def _snapshot_in(self, conn: Connection, committed: bool) -> Snapshot:
        integ = self.integrity
        floor = integ.counter.floor()
        # a write transaction locks the state row first (PostgreSQL): no other writer commits
        # between it and the rows read below
        state = read_state(conn, lock=not committed)
        integ.check_state(state, floor)
        if committed:
            integ.counter.saw(state.seq)
        snap = self._snapshot
        if snap is not None and snap.digest == state.digest:
            return snap
        snap = load_snapshot(conn, integ, state)
        self._snapshot = snap
        return snap

    def head(self, namespace: str, name: str, conn: Connection | None = None) -> Head | None:
        """The current version; with `conn`, as that (write) transaction sees it."""
        return self.snapshot(conn).heads.get((namespace, name))

    def document(self, head: Head) -> SessionDoc:
        doc = self._docs.get(head.hash)
        if doc is not None:
            return doc
        with self.r.connect() as conn:
            row = fastsql.execute(
                conn, _DOC_SQL, {"ns": head.namespace, "name": head.name, "v": head.version}
            ).fetchone()
        where = f"version {head.version} of session {head.namespace}/{head.name}"
        if row is None:
            raise Tampered(f"{where} is missing from session_versions")
        ns, name, version, h, predecessor, text, author, mac = row
        expected = self.integrity.version_mac(ns, name, version, h, predecessor, text, author)
        if not hmac.compare_digest(mac, expected) or h != head.hash:
            raise Tampered(f"the stored document of {where} was changed outside CAS")
        doc = SessionDoc.model_validate(json.loads(text))
        with self._lock:
            if len(self._docs) > 10_000:
                self._docs.clear()
            self._docs[head.hash] = doc
        return doc

    def materials(self, namespace: str, session: str, at: str | None = None) -> dict[str, Material]:
        """Every stored secret of one session, opened. With `at` (the version's hash the caller
        read), the result is cached for that version: secrets change only with the version.
        A row that fails its MAC, is not the one the state names, or does not open: `Tampered`."""
        if at is not None:
            hit = self._by_version.get(at + namespace + "/" + session)
            if hit is not None:
                return dict(hit)
        with self._read() as conn:
            snap = self._snapshot_in(conn, committed=True)
            rows = fastsql.execute(
                conn, _SECRETS_SQL, {"ns": namespace, "name": session}
            ).fetchall()
        head = snap.heads.get((namespace, session))
        current = head.hash if head is not None else None
        integ = self.integrity
        out: dict[str, Material] = {}
        expected = dict(snap.secrets_of.get((namespace, session), {}))
        for name, kind, fp, sealed, mac in rows:
            place = f"{namespace}/{session}/{name}"
            sealed = bytes(sealed)
            if expected.pop(name, None) != mac or not hmac.compare_digest(
                mac, integ.secret_mac(namespace, session, name, kind, fp, sealed)
            ):
                raise Tampered(f"the sealed secret {place} was changed outside CAS")
            key = (place, mac)
            m = self._materials.get(key)
            if m is None:
                try:
                    m = open_sealed(self.keys.seal, place, sealed)
                except (InvalidTag, ValueError):
                    raise Tampered(f"the sealed secret {place} does not open") from None
                with self._lock:
                    if len(self._materials) > 100_000:
                        self._materials.clear()
                    self._materials[key] = m
            out[name] = m
        if expected:
            raise Tampered(
                f"sealed secrets of {namespace}/{session} are missing: "
                + ", ".join(sorted(expected))
            )
        if at is not None and current == at:
            with self._lock:
                if len(self._by_version) > 10_000:
                    self._by_version.clear()
                self._by_version[at + namespace + "/" + session] = dict(out)
        return out
