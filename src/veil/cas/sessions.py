"""Creating, updating and reading sessions, and generating their secrets.

A create must not name a predecessor; an update must name the hash of the current version, and
the write happens only `WHERE hash = predecessor`, so concurrent updates from one version leave
exactly one winner (the others get 409). Secrets are generated before the transaction (RSA keys
take a while) and kept when their definition's fingerprint is unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from veil.cas import audit, limits
from veil.cas.core import Cas, Head, Refusal, Tampered, allowed, now_iso
from veil.cas.integrity import Integrity, Snapshot
from veil.cas.secrets import Material, external_problem, fingerprint, generate, seal
from veil.cas.store import exports as exports_t
from veil.cas.store import namespaces, secrets_t, session_heads, session_versions
from veil.session.model import SecretDef, SessionDoc, session_hash

__all__ = [
    "Prepared",
    "SessionInfo",
    "check_imports",
    "create",
    "create_in",
    "history",
    "import_source",
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


def _imported_dependencies(
    cas: Cas, namespace: str, doc: SessionDoc, planned: dict[str, dict[str, Material]]
) -> tuple[dict[str, Material], dict[str, str]]:
    """The imported secrets this session's own ones are made from (a certificate whose issuer
    is a CA another session exports to it), opened, and an identity of each for fingerprints.
    Read from `planned` (sessions this transaction prepared before) or CAS; whether the source
    exports them is checked when the session is written, before anything is stored. A missing
    one gets the answer a non-exporting session gets (nothing learnt about other sessions)."""
    deps = {d for s in doc.secrets if s.import_ is None
            for d in (s.private_key, s.issuer) if d is not None}
    out: dict[str, Material] = {}
    ids: dict[str, str] = {}
    for s in doc.secrets:
        if s.import_ is None or s.name not in deps:
            continue
        src_ns, src_name, secret_name = import_source(s, namespace)
        source = planned.get(f"{src_ns}/{src_name}")
        if source is None:
            source = cas.materials(src_ns, src_name)
        m = source.get(secret_name)
        if m is None:
            raise Refusal(422, f"secret {s.name!r}: {src_ns}/{src_name} does not export "
                          f"{secret_name!r} to {namespace}/{doc.name}")
        out[s.name] = m
        ids[s.name] = hmac.new(cas.keys.fingerprint, m.to_json(), hashlib.sha256).hexdigest()
    return out, ids


def _plan_secrets(
    cas: Cas, namespace: str, doc: SessionDoc,
    planned: dict[str, dict[str, Material]] | None = None,
) -> tuple[dict[str, tuple[str, str, bytes]], set[str]]:
    """(name → (kind, fingerprint, sealed)) for secrets to write, and names to delete. The
    session's materials are recorded in `planned` (`namespace/session` → name → material) for
    the sessions a transaction prepares after it."""
    problems = limits.doc_problems(namespace, doc)
    if problems:
        raise Refusal(422, "; ".join(problems))
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
    planned = {} if planned is None else planned
    imported, fps = _imported_dependencies(cas, namespace, doc, planned)
    resolved: dict[str, Material] = dict(imported)
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
    removed = set(stored) - set(fps) - set(imported)
    planned[f"{namespace}/{doc.name}"] = {n: m for n, m in resolved.items() if n not in imported}
    problems = limits.answer_problems(doc, resolved)
    if problems:
        raise Refusal(422, "; ".join(problems))
    return writes, removed


def check_imports(
    snap: Snapshot,
    namespace: str,
    doc: SessionDoc,
    owner: str,
    pending: dict[str, SessionDoc] | None = None,
) -> list[str]:
    """Reasons why an import is not allowed: the exporting session must export the secret to
    this session, bound to `owner`, the identity that owns (or is creating) this namespace.
    A session that does not exist and one that does not export get the same answer.
    `pending` (`namespace/name` -> document) holds sessions this transaction already wrote:
    the same identity writes both, and their exports are bound when written."""
    problems: list[str] = []
    for s in doc.secrets:
        if s.import_ is None:
            continue
        src_ns, src_name, secret_name = import_source(s, namespace)
        src = (pending or {}).get(f"{src_ns}/{src_name}")
        if src is not None:
            problems.extend(_export_problem(s.name, src, src_ns, secret_name, namespace, doc))
            continue
        bound = snap.exports.get((src_ns, src_name, secret_name, namespace, doc.name))
        if bound is None or bound[0] != owner:
            problems.append(
                f"secret {s.name!r}: {src_ns}/{src_name} does not export {secret_name!r} "
                f"to {namespace}/{doc.name}"
            )
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


def import_source(s: SecretDef, namespace: str) -> tuple[str, str, str]:
    """(namespace, session, secret) an import names."""
    assert s.import_ is not None
    src_ns, _, src_name = s.import_.session.rpartition("/")
    return src_ns or namespace, src_name, s.import_.secret or s.name


def _write(
    conn: Connection,
    integ: Integrity,
    snap: Snapshot,
    namespace: str,
    doc: SessionDoc,
    writes: dict[str, tuple[str, str, bytes]],
    removed: set[str],
) -> int:
    """Replace the session's changed secrets; returns the change to the state digest."""
    names = set(writes) | removed
    gone = [snap.secrets[k] for n in names if (k := (namespace, doc.name, n)) in snap.secrets]
    if names:
        conn.execute(
            delete(secrets_t).where(
                secrets_t.c.namespace == namespace,
                secrets_t.c.session == doc.name,
                secrets_t.c.name.in_(sorted(names)),
            )
        )
    created = now_iso()
    rows: list[dict[str, Any]] = []
    for name, (kind, fp, sealed) in sorted(writes.items()):
        mac = integ.secret_mac(namespace, doc.name, name, kind, fp, sealed)
        rows.append(
            {
                "namespace": namespace,
                "session": doc.name,
                "name": name,
                "kind": kind,
                "fingerprint": fp,
                "sealed": sealed,
                "created": created,
                "mac": mac,
            }
        )
    if rows:  # one executemany: a statement per row took seconds for 10,000 secrets
        conn.execute(insert(secrets_t), rows)
    added = [str(r["mac"]) for r in rows]
    return integ.delta(added, gone)


def _write_exports(
    conn: Connection,
    integ: Integrity,
    snap: Snapshot,
    namespace: str,
    doc: SessionDoc,
    identity: str,
) -> int:
    """Record who may import this session's secrets. An export keeps the owner it was bound
    to when first written: the importing namespace's owner, or — when nobody owns that
    namespace yet — the identity writing the export, so a namespace created later by anyone
    else cannot claim it. Returns the change to the state digest."""
    wanted = {
        (namespace, doc.name, s.name, t.namespace or namespace, t.session)
        for s in doc.secrets
        if s.import_ is None
        for t in s.export
    }
    have = {k: v for k, v in snap.exports.items() if k[:2] == (namespace, doc.name)}
    added: list[str] = []
    gone: list[str] = []
    for k in sorted(set(have) - wanted):
        gone.append(have[k][1])
        conn.execute(
            delete(exports_t).where(*(c == v for c, v in zip(_EXPORT_KEY, k, strict=True)))
        )
    for k in sorted(wanted - set(have)):
        owner = snap.owners.get(k[3], identity)
        mac = integ.export_mac(k, owner)
        added.append(mac)
        conn.execute(
            insert(exports_t).values(
                namespace=k[0],
                session=k[1],
                secret=k[2],
                target_namespace=k[3],
                target_session=k[4],
                owner=owner,
                mac=mac,
            )
        )
    return integ.delta(added, gone)


_EXPORT_KEY = (
    exports_t.c.namespace,
    exports_t.c.session,
    exports_t.c.secret,
    exports_t.c.target_namespace,
    exports_t.c.target_session,
)


def _store_version(
    conn: Connection,
    integ: Integrity,
    namespace: str,
    doc: SessionDoc,
    version: int,
    h: str,
    author: str,
) -> None:
    document = json.dumps(doc.canonical(), sort_keys=True)
    conn.execute(
        insert(session_versions).values(
            namespace=namespace,
            name=doc.name,
            version=version,
            hash=h,
            predecessor=doc.predecessor,
            document=document,
            author=author,
            created=now_iso(),
            mac=integ.version_mac(
                namespace, doc.name, version, h, doc.predecessor, document, author
            ),
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


def prepare_create(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None,
                   planned: dict[str, dict[str, Material]] | None = None) -> Prepared:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    if identity is None:
        raise _deny(cas, 401, "creating a session needs a registered client certificate", **where)
    if doc.predecessor is not None:
        raise Refusal(422, "a new session has no predecessor; leave `predecessor` out")
    writes, _ = _plan_secrets(cas, namespace, doc, planned)
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
    integ = cas.integrity
    snap = cas.snapshot(conn)
    owner = snap.owners.get(namespace)
    delta = 0
    if owner is None:
        row = integ.namespace_row(namespace, identity, now_iso())
        conn.execute(insert(namespaces).values(**row))
        delta ^= integ.delta([row["mac"]])
    elif owner != identity:
        raise Refusal(403, f"namespace {namespace!r} belongs to another client")
    if (namespace, doc.name) in snap.heads:
        raise Refusal(
            409,
            f"session {namespace}/{doc.name} exists; update it with "
            "its current hash as predecessor",
        )
    problems = check_imports(snap, namespace, doc, identity, pending)
    if problems:
        raise Refusal(422, "; ".join(problems))
    row = integ.head_row(namespace, doc.name, 1, h, identity)
    conn.execute(insert(session_heads).values(**row))
    delta ^= integ.delta([row["mac"]])
    _store_version(conn, integ, namespace, doc, 1, h, identity)
    delta ^= _write(conn, integ, snap, namespace, doc, p.writes, set())
    delta ^= _write_exports(conn, integ, snap, namespace, doc, identity)
    audit.append(
        conn,
        integ,
        "create",
        delta=delta,
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


def prepare_update(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None,
                   planned: dict[str, dict[str, Material]] | None = None) -> Prepared:
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
    writes, removed = _plan_secrets(cas, namespace, doc, planned)
    return Prepared(namespace, doc, session_hash(doc), writes, removed, head)


def update_in(
    conn: Connection,
    cas: Cas,
    p: Prepared,
    identity: str | None,
    pending: dict[str, SessionDoc] | None = None,
) -> SessionInfo:
    """Write a prepared update inside the caller's transaction (see `create_in`)."""
    namespace, doc, h = p.namespace, p.doc, p.hash
    integ = cas.integrity
    snap = cas.snapshot(conn)
    lost = Refusal(
        409, "another update of this version won; read the session again and retry with its hash"
    )
    now = snap.heads.get((namespace, doc.name))
    if now is None or now.hash != doc.predecessor:
        raise lost
    owner = snap.owners.get(namespace, identity or "")
    problems = check_imports(snap, namespace, doc, owner, pending)
    if problems:
        raise Refusal(422, "; ".join(problems))
    row = integ.head_row(namespace, doc.name, now.version + 1, h, now.creator)
    won = conn.execute(
        sql_update(session_heads)
        .where(
            and_(
                session_heads.c.namespace == namespace,
                session_heads.c.name == doc.name,
                session_heads.c.hash == doc.predecessor,
            )
        )
        .values(version=row["version"], hash=h, mac=row["mac"])
    ).rowcount
    if won != 1:
        raise lost
    delta = integ.delta([row["mac"]], [snap.head_macs[(namespace, doc.name)]])
    _store_version(conn, integ, namespace, doc, now.version + 1, h, identity or "")
    delta ^= _write(conn, integ, snap, namespace, doc, p.writes, p.removed)
    delta ^= _write_exports(conn, integ, snap, namespace, doc, identity or now.creator)
    audit.append(
        conn,
        integ,
        "update",
        delta=delta,
        outcome="ok",
        hash=h,
        version=now.version + 1,
        secrets=sorted(p.writes),
        namespace=namespace,
        session=doc.name,
        actor=identity,
    )
    return SessionInfo(namespace, doc.name, now.version + 1, h)


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
    v = session_versions.c
    with cas.r.connect() as conn:
        rows = conn.execute(
            select(v.version, v.hash, v.predecessor, v.author, v.created, v.document, v.mac)
            .where(v.namespace == namespace, v.name == name)
            .order_by(v.version)
        ).all()
    integ = cas.integrity
    for r in rows:
        mac = integ.version_mac(
            namespace, name, r.version, r.hash, r.predecessor, r.document, r.author
        )
        if not hmac.compare_digest(mac, r.mac):
            raise Tampered(
                f"version {r.version} of session {namespace}/{name} was changed outside CAS"
            )
    cas.audit_event(
        "read", outcome="ok", namespace=namespace, session=name, actor=identity, op="history"
    )
    keep = ("version", "hash", "predecessor", "author", "created")
    return [{k: getattr(r, k) for k in keep} for r in rows]
