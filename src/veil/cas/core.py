"""What every CAS operation shares: the database, the keys, the refusal type, access checks."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from veil.cas import audit, fastsql
from veil.cas.groupcommit import GroupCommit
from veil.cas.secrets import Material, open_sealed
from veil.cas.state import Keyring
from veil.cas.store import secrets_t, session_heads, session_versions
from veil.cas.verifiers import Verifier
from veil.session.model import CREATOR, SessionDoc

__all__ = ["Cas", "Head", "Refusal", "allowed", "now_iso"]

ANY = "ANY"

# built once: constructing a statement costs more than running it from the compiled cache
_HEAD = select(session_heads).where(
    session_heads.c.namespace == bindparam("ns"), session_heads.c.name == bindparam("name")
)
_HEAD_HASH = select(session_heads.c.hash).where(
    session_heads.c.namespace == bindparam("ns"), session_heads.c.name == bindparam("name")
)
_HEAD_SQL = (
    "SELECT version, hash, creator FROM session_heads WHERE namespace = :ns AND name = :name"
)
_DOC = select(session_versions.c.document).where(session_versions.c.hash == bindparam("h")).limit(1)
_SECRETS = select(secrets_t.c.name, secrets_t.c.fingerprint, secrets_t.c.sealed).where(
    secrets_t.c.namespace == bindparam("ns"), secrets_t.c.session == bindparam("name")
)


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


@dataclass(frozen=True)
class Head:
    namespace: str
    name: str
    version: int
    hash: str
    creator: str


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
    configs: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)

    _committer: GroupCommit | None = None

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    @property
    def committer(self) -> GroupCommit:
        """Batches the write transactions of attestations (see `veil.cas.groupcommit`)."""
        if self._committer is None:
            with self._lock:
                if self._committer is None:
                    self._committer = GroupCommit(
                        self.engine.begin, self.gate, first=audit.lock_head
                    )
        return self._committer

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction."""
        if self.gate is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.gate(), self.engine.begin() as conn:
            yield conn

    def audit_event(self, event: str, **fields: Any) -> None:
        """Record an event in a transaction of its own (refusals, reads)."""
        with self.write() as conn:
            audit.append(conn, self.keys.audit, event, **fields)

    @property
    def r(self) -> Engine:
        return self.reader or self.engine

    def head(self, namespace: str, name: str, conn: Connection | None = None) -> Head | None:
        """The current version; with `conn`, as that (write) transaction sees it."""
        if conn is not None:
            row = fastsql.execute(conn, _HEAD_SQL, {"ns": namespace, "name": name}).fetchone()
            if row is None:
                return None
            return Head(namespace, name, int(row[0]), row[1], row[2])
        else:
            with self.r.connect() as rconn:
                row = rconn.execute(_HEAD, {"ns": namespace, "name": name}).first()
        if row is None:
            return None
        return Head(row.namespace, row.name, row.version, row.hash, row.creator)

    def document(self, head: Head) -> SessionDoc:
        doc = self._docs.get(head.hash)
        if doc is not None:
            return doc
        with self.r.connect() as conn:
            text = conn.execute(_DOC, {"h": head.hash}).scalar_one()
        doc = SessionDoc.model_validate(json.loads(text))
        with self._lock:
            if len(self._docs) > 10_000:
                self._docs.clear()
            self._docs[head.hash] = doc
        return doc

    def materials(self, namespace: str, session: str, at: str | None = None) -> dict[str, Material]:
        """Every stored secret of one session, opened. With `at` (the version's hash the caller
        read), the result is cached for that version: secrets change only with the version."""
        if at is not None:
            hit = self._by_version.get(at + namespace + "/" + session)
            if hit is not None:
                return dict(hit)
        with self.r.connect() as conn:
            rows = conn.execute(_SECRETS, {"ns": namespace, "name": session}).all()
            # read after the secrets: if the head is still `at`, they belong to that version
            current = conn.execute(
                _HEAD_HASH, {"ns": namespace, "name": session}
            ).scalar_one_or_none()
        out: dict[str, Material] = {}
        for row in rows:
            place = f"{namespace}/{session}/{row.name}"
            key = (place, row.fingerprint)
            m = self._materials.get(key)
            if m is None:
                m = open_sealed(self.keys.seal, place, row.sealed)
                with self._lock:
                    if len(self._materials) > 100_000:
                        self._materials.clear()
                    self._materials[key] = m
            out[row.name] = m
        if at is not None and current == at:
            with self._lock:
                if len(self._by_version) > 10_000:
                    self._by_version.clear()
                self._by_version[at + namespace + "/" + session] = dict(out)
        return out
