"""Creating, updating and reading sessions, and generating their secrets.

A create must not name a predecessor; an update must name the hash of the current version, and
the write happens only `WHERE hash = predecessor`, so concurrent updates from one version leave
exactly one winner (the others get 409). Secrets are generated before the transaction (RSA keys
take a while) and kept when their definition's fingerprint is unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from veil.cas import audit
from veil.cas.core import Cas, Head, Refusal, allowed, now_iso
from veil.cas.secrets import Material, external_problem, fingerprint, generate, seal
from veil.cas.store import namespaces, secrets_t, session_heads, session_versions
from veil.session.model import SecretDef, SessionDoc, session_hash

__all__ = [
    "Prepared",
    "SessionInfo",
    "create",
    "create_in",
    "history",
    "prepare_create",
    "prepare_update",
    "read",
    "update",
    "update_in",
]


@dataclass(frozen=True)
class SessionInfo:
    namespace: str
    name: str
    version: int
    hash: str


def _order(doc: SessionDoc) -> list[SecretDef]:
    """Own (not imported) secrets, each after the secrets it is made from."""
    defs = {s.name: s for s in doc.secrets if s.import_ is None}
    done: list[SecretDef] = []
    seen: set[str] = set()

    def visit(s: SecretDef) -> None:
        if s.name in seen:
            return
        seen.add(s.name)
        for dep in (s.private_key, s.issuer):
            if dep is not None and dep in defs:
                visit(defs[dep])
        done.append(s)

    for s in defs.values():
        visit(s)
    return done


def _plan_secrets(
    cas: Cas, namespace: str, doc: SessionDoc
) -> tuple[dict[str, tuple[str, str, bytes]], set[str]]:
    """(name → (kind, fingerprint, sealed)) for secrets to write, and names to delete."""
    for s in doc.secrets:
        if s.external:
            reason = external_problem(s)
            if reason is None and cas.keys.random is None:
                reason = (
                    f"secret {s.name!r} is external, but this CAS has no PKCS#11 token "
                    "(veil cas init --pkcs11-module ... --pkcs11-token ...)"
                )
            if reason is not None:
                raise Refusal(422, reason)
    with cas.r.connect() as conn:
        stored = {
            r.name: r.fingerprint
            for r in conn.execute(
                select(secrets_t.c.name, secrets_t.c.fingerprint).where(
                    secrets_t.c.namespace == namespace, secrets_t.c.session == doc.name
                )
            )
        }
    existing = cas.materials(namespace, doc.name) if stored else {}
    fps: dict[str, str] = {}
    resolved: dict[str, Material] = {}
    writes: dict[str, tuple[str, str, bytes]] = {}
    for s in _order(doc):
        deps = [fps[d] for d in (s.private_key, s.issuer) if d is not None and d in fps]
        fp = fingerprint(cas.keys.fingerprint, s, deps)
        fps[s.name] = fp
        if stored.get(s.name) == fp and s.name in existing:
            resolved[s.name] = existing[s.name]
            continue
        m = generate(s, resolved, cas.keys.random)
        resolved[s.name] = m
        place = f"{namespace}/{doc.name}/{s.name}"
        writes[s.name] = (m.kind, fp, seal(cas.keys.seal, place, m))
    removed = set(stored) - set(fps)
    return writes, removed


def check_imports(
    conn: Connection,
    cas: Cas,
    namespace: str,
    doc: SessionDoc,
    pending: dict[str, SessionDoc] | None = None,
) -> list[str]:
    """Reasons why an import is not allowed (the exporting session must export to us).
    `pending` (`namespace/name` -> document) holds sessions this transaction already wrote."""
    problems: list[str] = []
    for s in doc.secrets:
        if s.import_ is None:
            continue
        src_ns, _, src_name = s.import_.session.rpartition("/")
        src_ns = src_ns or namespace
        secret_name = s.import_.secret or s.name
        src = (pending or {}).get(f"{src_ns}/{src_name}")
        if src is not None:
            problems.extend(_export_problem(s.name, src, src_ns, secret_name, namespace, doc))
            continue
        row = conn.execute(
            select(session_heads.c.hash).where(
                session_heads.c.namespace == src_ns, session_heads.c.name == src_name
            )
        ).first()
        if row is None:
            problems.append(f"secret {s.name!r}: session {src_ns}/{src_name} does not exist")
            continue
        src = cas.document(Head(src_ns, src_name, 0, row.hash, ""))
        problems.extend(_export_problem(s.name, src, src_ns, secret_name, namespace, doc))
    return problems


def _export_problem(
    name: str, src: SessionDoc, src_ns: str, secret_name: str, namespace: str, doc: SessionDoc
) -> list[str]:
    d = src.secret(secret_name)
    ok = d is not None and any(
        t.session == doc.name and (t.namespace or src_ns) == namespace for t in d.export
    )
    if ok:
        return []
    return [
        f"secret {name!r}: {src_ns}/{src.name} does not export {secret_name!r} "
        f"to {namespace}/{doc.name}"
    ]


def _write(
    conn: Connection,
    namespace: str,
    doc: SessionDoc,
    writes: dict[str, tuple[str, str, bytes]],
    removed: set[str],
) -> None:
    names = set(writes) | removed
    if names:
        conn.execute(
            delete(secrets_t).where(
                secrets_t.c.namespace == namespace,
                secrets_t.c.session == doc.name,
                secrets_t.c.name.in_(sorted(names)),
            )
        )
    created = now_iso()
    for name, (kind, fp, sealed) in sorted(writes.items()):
        conn.execute(
            insert(secrets_t).values(
                namespace=namespace,
                session=doc.name,
                name=name,
                kind=kind,
                fingerprint=fp,
                sealed=sealed,
                created=created,
            )
        )


def _store_version(
    conn: Connection, namespace: str, doc: SessionDoc, version: int, h: str, author: str
) -> None:
    conn.execute(
        insert(session_versions).values(
            namespace=namespace,
            name=doc.name,
            version=version,
            hash=h,
            predecessor=doc.predecessor,
            document=json.dumps(doc.canonical(), sort_keys=True),
            author=author,
            created=now_iso(),
        )
    )


def _deny(cas: Cas, status: int, reason: str, **fields: Any) -> Refusal:
    cas.audit_event("denied", outcome="denied", reason=reason, **fields)
    return Refusal(status, reason)


@dataclass(frozen=True)
class Prepared:
    """A checked create or update with its secrets generated, ready to be written."""

    namespace: str
    doc: SessionDoc
    hash: str
    writes: dict[str, tuple[str, str, bytes]]
    removed: set[str]
    head: Head | None  # the version an update replaces; None for a create


def prepare_create(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None) -> Prepared:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    if identity is None:
        raise _deny(cas, 401, "creating a session needs a registered client certificate", **where)
    if doc.predecessor is not None:
        raise Refusal(422, "a new session has no predecessor; leave `predecessor` out")
    writes, _ = _plan_secrets(cas, namespace, doc)
    return Prepared(namespace, doc, session_hash(doc), writes, set(), None)


def create_in(
    conn: Connection,
    cas: Cas,
    p: Prepared,
    identity: str,
    pending: dict[str, SessionDoc] | None = None,
) -> SessionInfo:
    """Write a prepared create inside the caller's transaction; `pending` holds sessions the
    same transaction wrote before (an import may name them)."""
    namespace, doc, h = p.namespace, p.doc, p.hash
    owner = conn.execute(
        select(namespaces.c.owner).where(namespaces.c.name == namespace)
    ).scalar_one_or_none()
    if owner is None:
        conn.execute(insert(namespaces).values(name=namespace, owner=identity, created=now_iso()))
    elif owner != identity:
        raise Refusal(403, f"namespace {namespace!r} belongs to another client")
    if conn.execute(
        select(session_heads.c.hash).where(
            session_heads.c.namespace == namespace, session_heads.c.name == doc.name
        )
    ).first():
        raise Refusal(
            409,
            f"session {namespace}/{doc.name} exists; update it with "
            "its current hash as predecessor",
        )
    problems = check_imports(conn, cas, namespace, doc, pending)
    if problems:
        raise Refusal(422, "; ".join(problems))
    conn.execute(
        insert(session_heads).values(
            namespace=namespace, name=doc.name, version=1, hash=h, creator=identity
        )
    )
    _store_version(conn, namespace, doc, 1, h, identity)
    _write(conn, namespace, doc, p.writes, set())
    audit.append(
        conn,
        cas.keys.audit,
        "create",
        outcome="ok",
        hash=h,
        version=1,
        secrets=sorted(p.writes),
        namespace=namespace,
        session=doc.name,
        actor=identity,
    )
    return SessionInfo(namespace, doc.name, 1, h)


def create(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None) -> SessionInfo:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    p = prepare_create(cas, namespace, doc, identity)
    assert identity is not None
    try:
        with cas.write() as conn:
            return create_in(conn, cas, p, identity)
    except IntegrityError:
        raise _deny(
            cas, 409, f"session {namespace}/{doc.name} was created concurrently", **where
        ) from None
    except Refusal as r:
        cas.audit_event("denied", outcome="denied", reason=r.reason, op="create", **where)
        raise


def prepare_update(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None) -> Prepared:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    head = cas.head(namespace, doc.name)
    if head is None:
        raise _deny(cas, 404, f"no session {namespace}/{doc.name}", op="update", **where)
    current = cas.document(head)
    if not allowed(current.access_policy.update, identity, head.creator):
        raise _deny(cas, 403, f"not allowed to update {namespace}/{doc.name}", op="update", **where)
    if doc.predecessor != head.hash:
        raise _deny(
            cas,
            409,
            f"predecessor does not match the current version {head.version} ({head.hash})",
            op="update",
            current=head.hash,
            **where,
        )
    writes, removed = _plan_secrets(cas, namespace, doc)
    return Prepared(namespace, doc, session_hash(doc), writes, removed, head)


def update_in(
    conn: Connection,
    cas: Cas,
    p: Prepared,
    identity: str | None,
    pending: dict[str, SessionDoc] | None = None,
) -> SessionInfo:
    """Write a prepared update inside the caller's transaction (see `create_in`)."""
    namespace, doc, h, head = p.namespace, p.doc, p.hash, p.head
    assert head is not None
    problems = check_imports(conn, cas, namespace, doc, pending)
    if problems:
        raise Refusal(422, "; ".join(problems))
    won = conn.execute(
        sql_update(session_heads)
        .where(
            and_(
                session_heads.c.namespace == namespace,
                session_heads.c.name == doc.name,
                session_heads.c.hash == doc.predecessor,
            )
        )
        .values(version=head.version + 1, hash=h)
    ).rowcount
    if won != 1:
        raise Refusal(
            409,
            "another update of this version won; read the session again and retry with its hash",
        )
    _store_version(conn, namespace, doc, head.version + 1, h, identity or "")
    _write(conn, namespace, doc, p.writes, p.removed)
    audit.append(
        conn,
        cas.keys.audit,
        "update",
        outcome="ok",
        hash=h,
        version=head.version + 1,
        secrets=sorted(p.writes),
        namespace=namespace,
        session=doc.name,
        actor=identity,
    )
    return SessionInfo(namespace, doc.name, head.version + 1, h)


def update(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None) -> SessionInfo:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    p = prepare_update(cas, namespace, doc, identity)
    try:
        with cas.write() as conn:
            return update_in(conn, cas, p, identity)
    except IntegrityError:
        raise _deny(cas, 409, "another update of this version won", op="update", **where) from None
    except Refusal as r:
        cas.audit_event("denied", outcome="denied", reason=r.reason, op="update", **where)
        raise


def _readable(cas: Cas, namespace: str, name: str, identity: str | None, op: str) -> Head:
    head = cas.head(namespace, name)
    where = {"namespace": namespace, "session": name, "actor": identity, "op": op}
    if head is None:
        raise _deny(cas, 404, f"no session {namespace}/{name}", **where)
    if not allowed(cas.document(head).access_policy.read, identity, head.creator):
        raise _deny(cas, 403, f"not allowed to read {namespace}/{name}", **where)
    return head


def read(cas: Cas, namespace: str, name: str, identity: str | None) -> dict[str, Any]:
    head = _readable(cas, namespace, name, identity, "read")
    cas.audit_event(
        "read", outcome="ok", namespace=namespace, session=name, actor=identity, hash=head.hash
    )
    return {
        "namespace": namespace,
        "name": name,
        "version": head.version,
        "hash": head.hash,
        "session": cas.document(head).canonical(),
    }


def history(cas: Cas, namespace: str, name: str, identity: str | None) -> list[dict[str, Any]]:
    _readable(cas, namespace, name, identity, "history")
    with cas.r.connect() as conn:
        rows = conn.execute(
            select(
                session_versions.c.version,
                session_versions.c.hash,
                session_versions.c.predecessor,
                session_versions.c.author,
                session_versions.c.created,
            )
            .where(session_versions.c.namespace == namespace, session_versions.c.name == name)
            .order_by(session_versions.c.version)
        ).all()
    cas.audit_event(
        "read", outcome="ok", namespace=namespace, session=name, actor=identity, op="history"
    )
    return [dict(r._mapping) for r in rows]
