"""Several sessions of one namespace at once: read their current versions, and write them all
or none (one database transaction). An update that changes nothing (same document, same secret
definitions, explicit values included) writes no version: its answer is the current one.

A mesh apply writes every session of a mesh here. Each document is a create (no predecessor)
or an update (predecessor = the hash of the current version); the checks are those of a single
create or update, and the first refusal rolls the whole transaction back and names its session.
An import may name a session the same transaction writes before it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from veil.cas.core import Cas, Head, Refusal, allowed
from veil.cas.secrets import Material
from veil.cas.sessions import (
    Prepared,
    SessionInfo,
    Writes,
    prepare_create,
    prepare_update,
    stored_fingerprints,
)
from veil.session.model import SessionDoc, content_hash

__all__ = ["MAX_SESSIONS", "commit", "current"]

MAX_SESSIONS = 5000


def _named(namespace: str, name: str, r: Refusal) -> Refusal:
    reason = f"session {namespace}/{name}: {r.reason}"
    return Refusal(r.status, reason, **{**r.extra, "session": name})


def _changes_nothing(cas: Cas, p: Prepared) -> bool:
    """An update whose document (but its predecessor) is the current one and whose secret
    definitions all kept their fingerprints (explicit values included): a mesh apply sends
    the sessions holding explicit values, which it cannot compare itself, and no version is
    written for those that did not change."""
    if p.head is None or p.writes or p.removed:
        return False
    mine = p.doc.canonical()
    theirs = cas.document(p.head).canonical()
    mine.pop("predecessor", None)
    theirs.pop("predecessor", None)
    return mine == theirs


_CONTENT: dict[str, str] = {}  # version hash -> content hash (versions never change)


def _content(cas: Cas, head: Head) -> str:
    got = _CONTENT.get(head.hash)
    if got is None:
        got = content_hash(cas.document(head))
        if len(_CONTENT) > 100_000:
            _CONTENT.clear()
        _CONTENT[head.hash] = got
    return got


def current(
    cas: Cas, namespace: str, names: list[str], identity: str | None,
    known: dict[str, str] | None = None,
) -> dict[str, dict[str, Any] | None]:
    """The current version of each named session (None where it does not exist). `known`:
    the content hash (`veil.session.model.content_hash`) the caller holds per name; where the
    current version says the same, the answer is `{version, hash, same: true}` without the
    document (an unchanged mesh's re-apply reads no documents)."""
    if len(names) > MAX_SESSIONS:
        raise Refusal(422, f"at most {MAX_SESSIONS} sessions per request")
    out: dict[str, dict[str, Any] | None] = {}
    heads = cas.snapshot().heads  # one verified state for every name
    for name in names:
        head = heads.get((namespace, name))
        if head is None:
            out[name] = None
            continue
        doc = cas.document(head)
        if not allowed(doc.access_policy.read, identity, head.creator):
            reason = f"not allowed to read {namespace}/{name}"
            cas.audit_event(
                "denied", outcome="denied", reason=reason, namespace=namespace,
                session=name, actor=identity, op="read",
            )
            raise Refusal(403, reason, session=name)
        if known and known.get(name) == _content(cas, head):
            out[name] = {"version": head.version, "hash": head.hash, "same": True}
        else:
            out[name] = {"version": head.version, "hash": head.hash,
                         "session": doc.canonical()}
    cas.audit_event(
        "read", outcome="ok", namespace=namespace, session="*", actor=identity, op="current",
        sessions=sorted(names),
    )
    return out


def commit(
    cas: Cas, namespace: str, docs: list[SessionDoc], identity: str | None
) -> list[SessionInfo]:
    """Create or update every document in one transaction; all of them or none."""
    if identity is None:
        raise Refusal(401, "writing sessions needs a registered client certificate")
    if len(docs) > MAX_SESSIONS:
        raise Refusal(422, f"at most {MAX_SESSIONS} sessions per transaction")
    seen: set[str] = set()
    for doc in docs:
        if doc.name in seen:
            raise Refusal(422, f"session {namespace}/{doc.name} appears twice")
        seen.add(doc.name)
    prepared: list[Prepared] = []
    planned: dict[str, dict[str, Material]] = {}  # an issuer may come from an earlier one
    stored = stored_fingerprints(cas, namespace, [d.name for d in docs])
    for doc in docs:
        try:
            prepare = prepare_update if doc.predecessor is not None else prepare_create
            prepared.append(prepare(cas, namespace, doc, identity, planned,
                                    stored.get(doc.name, {})))
        except Refusal as r:
            raise _named(namespace, doc.name, r) from None
    where = {"namespace": namespace, "actor": identity, "op": "transaction"}
    name = ""
    try:
        with cas.write() as conn:
            # every session checked against one verified state, in order (an import may name
            # a session written before it), then each table's rows in one statement and one
            # audit entry per session
            w = Writes(conn, cas)
            out: list[SessionInfo] = []
            for p in prepared:
                name = p.doc.name
                if p.head is None:
                    out.append(w.create(p, identity))
                elif _changes_nothing(cas, p):
                    out.append(w.unchanged(p))
                else:
                    out.append(w.update(p, identity))
            name = ""
            w.flush()
        if w.after is not None:
            cas.remember(w.after)
    except IntegrityError:
        who = f"session {namespace}/{name}" if name else f"a session of {namespace}"
        reason = f"{who} was written concurrently; nothing was changed"
        cas.audit_event("denied", outcome="denied", reason=reason, session=name or "*", **where)
        raise Refusal(409, reason, session=name or "*") from None
    except Refusal as r:
        name = name or str(r.extra.get("session", ""))
        named = r if not name or r.reason.startswith("session ") else _named(namespace, name, r)
        cas.audit_event("denied", outcome="denied", reason=named.reason, session=name, **where)
        raise named from None
    return out
