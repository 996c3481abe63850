"""What every CAS operation shares: the database, the keys, the refusal type, access checks."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from veil.cas import audit
from veil.cas.secrets import Material, open_sealed
from veil.cas.state import Keyring
from veil.cas.store import secrets_t, session_heads, session_versions
from veil.policy.session import CREATOR, SessionDoc

__all__ = ["Cas", "Head", "Refusal", "allowed", "now_iso"]

ANY = "ANY"


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
    # versions are immutable, so a parsed document is cached by its hash; materials are
    # cached by (place, fingerprint) as a sealed value only changes with its definition
    _docs: dict[str, SessionDoc] = field(default_factory=dict)
    _materials: dict[tuple[str, str], Material] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def audit_event(self, event: str, **fields: Any) -> None:
        """Record an event in a transaction of its own (refusals, reads)."""
        with self.engine.begin() as conn:
            audit.append(conn, self.keys.audit, event, **fields)

    @property
    def r(self) -> Engine:
        return self.reader or self.engine

    def head(self, namespace: str, name: str) -> Head | None:
        with self.r.connect() as conn:
            row = conn.execute(
                select(session_heads).where(
                    session_heads.c.namespace == namespace, session_heads.c.name == name
                )
            ).first()
        if row is None:
            return None
        return Head(row.namespace, row.name, row.version, row.hash, row.creator)

    def document(self, head: Head) -> SessionDoc:
        doc = self._docs.get(head.hash)
        if doc is not None:
            return doc
        with self.r.connect() as conn:
            text = conn.execute(
                select(session_versions.c.document)
                .where(session_versions.c.hash == head.hash)
                .limit(1)
            ).scalar_one()
        doc = SessionDoc.model_validate(json.loads(text))
        with self._lock:
            if len(self._docs) > 10_000:
                self._docs.clear()
            self._docs[head.hash] = doc
        return doc

    def materials(self, namespace: str, session: str) -> dict[str, Material]:
        """Every stored secret of one session, opened."""
        with self.r.connect() as conn:
            rows = conn.execute(
                select(secrets_t.c.name, secrets_t.c.fingerprint, secrets_t.c.sealed).where(
                    secrets_t.c.namespace == namespace, secrets_t.c.session == session
                )
            ).all()
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
        return out
