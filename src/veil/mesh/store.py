"""Where a mesh's sessions go: a `SessionStore` (CAS over HTTPS, or in memory for tests).

`connect_cas` checks the CAS's identity before it returns a store: the key the server presents
must be the expected one (see `veil.mesh.trust`); a mismatch names both fingerprints.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Protocol

from veil.errors import OperationalError, UserError
from veil.mesh.trust import ExpectedKey, fingerprint, normalize_addr, presented_key
from veil.session.model import SessionDoc, content_hash, session_hash

__all__ = ["CasStore", "Current", "MemoryStore", "SessionStore", "Written", "connect_cas"]


@dataclass(frozen=True)
class Current:
    version: int
    hash: str
    # canonical (explicit values blanked); None when CAS answered that it says the same as
    # the content hash the caller named (`known`)
    document: dict[str, Any] | None


@dataclass(frozen=True)
class Written:
    name: str
    version: int
    hash: str


class SessionStore(Protocol):
    addr: str
    key: str | None  # the CAS's public key, base64 DER (what the launcher pins)
    key_fingerprint: str

    def current(self, namespace: str, names: list[str], known: dict[str, str] | None = None
                ) -> dict[str, Current | None]:
        """The current version of each named session; None where there is none. Where
        `known` names its content hash (`veil.session.model.content_hash`), the version may
        come without its document."""

    def commit(self, namespace: str, documents: list[dict[str, Any]]) -> list[Written]:
        """Create or update every document, all or none (a refusal raises VeilError)."""

    def close(self) -> None: ...


class CasStore:
    """A CAS reached over HTTPS with its key pinned (`veil.cas.client`)."""

    def __init__(self, addr: str, key_b64: str) -> None:
        from veil.cas.client import CasClient  # httpx: load when used

        self.addr = addr
        self.key: str | None = key_b64
        self.key_fingerprint = fingerprint(base64.b64decode(key_b64))
        self.client = CasClient(addr, key_b64, timeout=120.0)

    def current(self, namespace: str, names: list[str], known: dict[str, str] | None = None
                ) -> dict[str, Current | None]:
        raw = self.client.current(namespace, names, known)
        return {n: (Current(v["version"], v["hash"], None if v.get("same") else v["session"])
                    if v else None)
                for n, v in raw.items()}

    def commit(self, namespace: str, documents: list[dict[str, Any]]) -> list[Written]:
        out = self.client.transaction(namespace, documents)
        return [Written(w["name"], w["version"], w["hash"]) for w in out]

    def close(self) -> None:
        self.client.close()


def connect_cas(addr: str, expected: ExpectedKey) -> tuple[CasStore, str | None]:
    """A store for the CAS at `addr` once its key checked out; with a warning when the key
    was taken on trust (`--only_for_testing-trust-any`)."""
    got = presented_key(addr)
    want = expected.der
    warning = None
    if want is None:
        warning = (f"trusting the key the CAS at {normalize_addr(addr)} presents, "
                   f"{fingerprint(got)}, without checking it (--only_for_testing-trust-any)")
    elif got != want:
        raise OperationalError(
            f"the CAS at {normalize_addr(addr)} presents key {fingerprint(got)}, but "
            f"{expected.source} says {fingerprint(want)}; nothing was sent",
            hint="if the CAS was re-initialised on purpose, record its new key with "
            "`veil cas trust ADDR KEY` (or fix cas_key in the mesh); otherwise someone may "
            "be in the middle")
    return CasStore(addr, base64.b64encode(got).decode()), warning


@dataclass
class MemoryStore:
    """Sessions in a dict, with CAS's create/update rules (tests, and the pure core's users)."""

    addr: str = "memory"
    key: str | None = None
    key_fingerprint: str = "memory"
    sessions: dict[tuple[str, str], list[SessionDoc]] = field(default_factory=dict)
    commits: int = 0

    def current(self, namespace: str, names: list[str], known: dict[str, str] | None = None
                ) -> dict[str, Current | None]:
        out: dict[str, Current | None] = {}
        for n in names:
            versions = self.sessions.get((namespace, n))
            if not versions:
                out[n] = None
                continue
            same = known is not None and known.get(n) == content_hash(versions[-1])
            out[n] = Current(len(versions), session_hash(versions[-1]),
                             None if same else versions[-1].canonical())
        return out

    def commit(self, namespace: str, documents: list[dict[str, Any]]) -> list[Written]:
        staged = dict(self.sessions)
        out: list[Written] = []
        for data in documents:
            doc = SessionDoc.model_validate(data)
            versions = list(staged.get((namespace, doc.name), []))
            head = session_hash(versions[-1]) if versions else None
            if doc.predecessor != head:
                raise UserError(f"CAS refused (409): session {namespace}/{doc.name}: "
                                "predecessor does not match the current version")
            if versions and _same(versions[-1], doc):  # as CAS: an update changing nothing
                out.append(Written(doc.name, len(versions), head or ""))
                continue
            versions.append(doc)
            staged[(namespace, doc.name)] = versions
            out.append(Written(doc.name, len(versions), session_hash(doc)))
        self.sessions = staged
        self.commits += 1
        return out

    def close(self) -> None:
        pass


def _same(a: SessionDoc, b: SessionDoc) -> bool:
    """The same document but for the predecessor, explicit values included."""
    return a.model_copy(update={"predecessor": None}) == b.model_copy(update={"predecessor": None})
