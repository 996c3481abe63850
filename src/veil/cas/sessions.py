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

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from veil.cas import audit, fastsql, limits
from veil.cas.core import Cas, Head, Refusal, Tampered, allowed, now_iso
from veil.cas.integrity import Snapshot
from veil.cas.secrets import Material, external_problem, fingerprint, generate, seal
from veil.cas.store import secrets_t, session_versions
from veil.session.model import SecretDef, SessionDoc, session_hash

__all__ = [
    "Prepared",
    "SessionInfo",
    "Writes",
    "check_imports",
    "create",
    "history",
    "import_source",
    "prepare_create",
    "prepare_update",
    "read",
    "update",
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


def stored_fingerprints(
    cas: Cas, namespace: str, sessions: list[str]
) -> dict[str, dict[str, str]]:
    """session → secret name → fingerprint of what is stored, for many sessions in one query
    (checked against the rows' MACs when their materials are opened)."""
    out: dict[str, dict[str, str]] = {}
    t = secrets_t.c
    with cas.r.connect() as conn:
        for i in range(0, len(sessions), 500):
            for r in conn.execute(
                select(t.session, t.name, t.fingerprint).where(
                    t.namespace == namespace, t.session.in_(sessions[i : i + 500])
                )
            ):
                out.setdefault(r.session, {})[r.name] = r.fingerprint
    return out


def _plan_secrets(
    cas: Cas, namespace: str, doc: SessionDoc,
    planned: dict[str, dict[str, Material]] | None = None,
    stored: dict[str, str] | None = None,
) -> tuple[dict[str, tuple[str, str, bytes]], set[str]]:
    """(name → (kind, fingerprint, sealed)) for secrets to write, and names to delete. The
    session's materials are recorded in `planned` (`namespace/session` → name → material) for
    the sessions a transaction prepares after it. `stored`: the fingerprints of the session's
    stored secrets when the caller read them already (`stored_fingerprints`)."""
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
    if stored is None:
        stored = stored_fingerprints(cas, namespace, [doc.name]).get(doc.name, {})
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


ExportKey = tuple[str, str, str, str, str]  # namespace, session, secret, target ns, target


def check_imports(
    snap: Snapshot,
    namespace: str,
    doc: SessionDoc,
    owner: str,
    staged: dict[tuple[str, str], set[ExportKey]] | None = None,
) -> list[str]:
    """Reasons why an import is not allowed: the exporting session must export the secret to
    this session, bound to `owner`, the identity that owns (or is creating) this namespace.
    A session that does not exist and one that does not export get the same answer.
    `staged` ((namespace, session) -> its exports) holds sessions this transaction already
    wrote: the same identity writes both, and their exports are bound when written."""
    problems: list[str] = []
    for s in doc.secrets:
        if s.import_ is None:
            continue
        src_ns, src_name, secret_name = import_source(s, namespace)
        key = (src_ns, src_name, secret_name, namespace, doc.name)
        exports = (staged or {}).get((src_ns, src_name))
        if exports is not None:
            ok = key in exports
        else:
            bound = snap.exports.get(key)
            ok = bound is not None and bound[0] == owner
        if not ok:
            problems.append(
                f"secret {s.name!r}: {src_ns}/{src_name} does not export {secret_name!r} "
                f"to {namespace}/{doc.name}"
            )
    return problems


def import_source(s: SecretDef, namespace: str) -> tuple[str, str, str]:
    """(namespace, session, secret) an import names."""
    assert s.import_ is not None
    src_ns, _, src_name = s.import_.session.rpartition("/")
    return src_ns or namespace, src_name, s.import_.secret or s.name


_INSERT_NAMESPACE = (
    "INSERT INTO namespaces (name, owner, created, mac) VALUES (:name, :owner, :created, :mac)"
)
_INSERT_HEAD = (
    "INSERT INTO session_heads (namespace, name, version, hash, creator, mac) "
    "VALUES (:namespace, :name, :version, :hash, :creator, :mac)"
)
# an update wins only from the version it names: of two updates of one version, one changes
# the row and the other changes nothing (409)
_MOVE_HEAD = (
    "UPDATE session_heads SET version = :version, hash = :hash, mac = :mac "
    "WHERE namespace = :namespace AND name = :name AND hash = :predecessor"
)
_INSERT_VERSION = (
    "INSERT INTO session_versions "
    "(namespace, name, version, hash, predecessor, document, author, created, mac) "
    "VALUES (:namespace, :name, :version, :hash, :predecessor, :document, :author, :created, "
    ":mac)"
)
_DELETE_SECRET = (
    "DELETE FROM secrets WHERE namespace = :namespace AND session = :session AND name = :name"
)
_INSERT_SECRET = (
    "INSERT INTO secrets (namespace, session, name, kind, fingerprint, sealed, created, mac) "
    "VALUES (:namespace, :session, :name, :kind, :fingerprint, :sealed, :created, :mac)"
)
_DELETE_EXPORT = (
    "DELETE FROM exports WHERE namespace = :namespace AND session = :session "
    "AND secret = :secret AND target_namespace = :target_namespace "
    "AND target_session = :target_session"
)
_INSERT_EXPORT = (
    "INSERT INTO exports (namespace, session, secret, target_namespace, target_session, owner, "
    "mac) VALUES (:namespace, :session, :secret, :target_namespace, :target_session, :owner, "
    ":mac)"
)
_EXPORT_COLUMNS = ("namespace", "session", "secret", "target_namespace", "target_session")


def _export_key(r: dict[str, Any]) -> ExportKey:
    return (r["namespace"], r["session"], r["secret"], r["target_namespace"],
            r["target_session"])


class Writes:
    """The rows of one or more session writes in the caller's write transaction.

    `create` and `update` check a prepared write against the state the transaction sees (read
    and verified once), with the writes staged before it, and stage its rows and its audit
    entry; `flush` then writes each table's rows with one statement, the heads of updates one
    by one (each must change exactly one row), and the audit entries as one piece of the
    chain — one entry per session. A refusal raises before anything was written; the caller's
    transaction rolls back whatever an error in `flush` leaves."""

    def __init__(self, conn: Connection, cas: Cas) -> None:
        self.conn = conn
        self.integ = cas.integrity
        self.snap = cas.snapshot(conn)
        self.created = now_iso()
        self.new_owners: dict[str, str] = {}  # namespaces this transaction creates
        self.rows: dict[str, list[dict[str, Any]]] = {
            k: [] for k in ("namespaces", "heads", "moves", "versions", "secrets_gone",
                            "secrets", "exports_gone", "exports")
        }
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.delta = 0
        self.written: set[tuple[str, str]] = set()
        self.after: Snapshot | None = None  # the state after `flush`, once committed
        # (namespace, session) staged -> the exports it has once written
        self.staged: dict[tuple[str, str], set[ExportKey]] = {}

    def _owner(self, namespace: str) -> str | None:
        return self.snap.owners.get(namespace) or self.new_owners.get(namespace)

    def create(self, p: Prepared, identity: str) -> SessionInfo:
        """Stage a prepared create (an import may name a session staged before it)."""
        namespace, doc, h = p.namespace, p.doc, p.hash
        owner = self._owner(namespace)
        delta = 0
        if owner is None:
            row = self.integ.namespace_row(namespace, identity, self.created)
            self.rows["namespaces"].append(row)
            self.new_owners[namespace] = identity
            delta ^= self.integ.delta([row["mac"]])
        elif owner != identity:
            raise Refusal(403, f"namespace {namespace!r} belongs to another client")
        if (namespace, doc.name) in self.snap.heads or (namespace, doc.name) in self.written:
            raise Refusal(
                409,
                f"session {namespace}/{doc.name} exists; update it with "
                "its current hash as predecessor",
            )
        problems = check_imports(self.snap, namespace, doc, identity, self.staged)
        if problems:
            raise Refusal(422, "; ".join(problems))
        row = self.integ.head_row(namespace, doc.name, 1, h, identity)
        self.rows["heads"].append(row)
        delta ^= self.integ.delta([row["mac"]])
        self._version(namespace, doc, 1, h, identity)
        delta ^= self._secrets(namespace, doc, p.writes, set())
        delta ^= self._exports(namespace, doc, identity)
        self._audit("create", delta, p, 1, identity)
        return SessionInfo(namespace, doc.name, 1, h)

    def update(self, p: Prepared, identity: str | None) -> SessionInfo:
        """Stage a prepared update (see `create`)."""
        namespace, doc, h = p.namespace, p.doc, p.hash
        lost = Refusal(
            409,
            "another update of this version won; read the session again and retry with its hash",
        )
        now = self.snap.heads.get((namespace, doc.name))
        if now is None or now.hash != doc.predecessor or (namespace, doc.name) in self.written:
            raise lost
        owner = self._owner(namespace) or identity or ""
        problems = check_imports(self.snap, namespace, doc, owner, self.staged)
        if problems:
            raise Refusal(422, "; ".join(problems))
        version = now.version + 1
        row = self.integ.head_row(namespace, doc.name, version, h, now.creator)
        self.rows["moves"].append({**row, "predecessor": doc.predecessor})
        delta = self.integ.delta([row["mac"]], [self.snap.head_macs[(namespace, doc.name)]])
        self._version(namespace, doc, version, h, identity or "")
        delta ^= self._secrets(namespace, doc, p.writes, p.removed)
        delta ^= self._exports(namespace, doc, identity or now.creator)
        self._audit("update", delta, p, version, identity)
        return SessionInfo(namespace, doc.name, version, h)

    def unchanged(self, p: Prepared) -> SessionInfo:
        """An update that changes nothing: no version is written, but the version it names
        must still be the current one (else 409, as for any update)."""
        key = (p.namespace, p.doc.name)
        now = self.snap.heads.get(key)
        if now is None or now.hash != p.doc.predecessor or key in self.written:
            raise Refusal(
                409,
                "another update of this version won; read the session again and retry with "
                "its hash",
            )
        self.written.add((p.namespace, p.doc.name))
        return SessionInfo(p.namespace, p.doc.name, now.version, now.hash)

    def _audit(
        self, event: str, delta: int, p: Prepared, version: int, identity: str | None
    ) -> None:
        self.written.add((p.namespace, p.doc.name))
        self.delta ^= delta
        self.entries.append((event, {
            "outcome": "ok", "hash": p.hash, "version": version, "secrets": sorted(p.writes),
            "namespace": p.namespace, "session": p.doc.name, "actor": identity,
        }))

    def _version(
        self, namespace: str, doc: SessionDoc, version: int, h: str, author: str
    ) -> None:
        document = json.dumps(doc.canonical(), sort_keys=True)
        self.rows["versions"].append({
            "namespace": namespace, "name": doc.name, "version": version, "hash": h,
            "predecessor": doc.predecessor, "document": document, "author": author,
            "created": self.created,
            "mac": self.integ.version_mac(
                namespace, doc.name, version, h, doc.predecessor, document, author
            ),
        })

    def _secrets(
        self,
        namespace: str,
        doc: SessionDoc,
        writes: dict[str, tuple[str, str, bytes]],
        removed: set[str],
    ) -> int:
        """Replace the session's changed secrets; returns the change to the state digest."""
        stored = self.snap.secrets_of.get((namespace, doc.name), {})
        names = sorted(set(writes) | removed)
        gone = [stored[n] for n in names if n in stored]
        self.rows["secrets_gone"].extend(
            {"namespace": namespace, "session": doc.name, "name": n} for n in names
        )
        added: list[str] = []
        for name, (kind, fp, sealed) in sorted(writes.items()):
            mac = self.integ.secret_mac(namespace, doc.name, name, kind, fp, sealed)
            added.append(mac)
            self.rows["secrets"].append({
                "namespace": namespace, "session": doc.name, "name": name, "kind": kind,
                "fingerprint": fp, "sealed": sealed, "created": self.created, "mac": mac,
            })
        return self.integ.delta(added, gone)

    def _exports(self, namespace: str, doc: SessionDoc, identity: str) -> int:
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
        self.staged[(namespace, doc.name)] = wanted
        have = self.snap.exports_of.get((namespace, doc.name), {})
        added: list[str] = []
        gone: list[str] = []
        for k in sorted(set(have) - wanted):
            gone.append(have[k][1])
            self.rows["exports_gone"].append(dict(zip(_EXPORT_COLUMNS, k, strict=True)))
        for k in sorted(wanted - set(have)):
            owner = self._owner(k[3]) or identity
            mac = self.integ.export_mac(k, owner)
            added.append(mac)
            self.rows["exports"].append(
                {**dict(zip(_EXPORT_COLUMNS, k, strict=True)), "owner": owner, "mac": mac}
            )
        return self.integ.delta(added, gone)

    def flush(self) -> None:
        """Write everything staged (in the caller's transaction)."""
        conn, rows = self.conn, self.rows
        fastsql.executemany(conn, _INSERT_NAMESPACE, rows["namespaces"])
        for move in rows["moves"]:
            if fastsql.execute(conn, _MOVE_HEAD, move).rowcount != 1:
                raise Refusal(
                    409,
                    f"session {move['namespace']}/{move['name']}: another update of this "
                    "version won; read the session again and retry with its hash",
                    session=move["name"],
                )
        fastsql.executemany(conn, _INSERT_HEAD, rows["heads"])
        fastsql.executemany(conn, _INSERT_VERSION, rows["versions"])
        fastsql.executemany(conn, _DELETE_SECRET, rows["secrets_gone"])
        fastsql.executemany(conn, _INSERT_SECRET, rows["secrets"])
        fastsql.executemany(conn, _DELETE_EXPORT, rows["exports_gone"])
        fastsql.executemany(conn, _INSERT_EXPORT, rows["exports"])
        audit.append_many(conn, self.integ, self.entries, self.delta)
        self.after = self._next_snapshot()
        for v in self.rows.values():
            v.clear()
        self.entries = []
        self.delta = 0

    def _next_snapshot(self) -> Snapshot:
        """The state once this transaction committed: the verified snapshot and what it wrote
        (for `Cas.remember`; used only while the state row names its digest)."""
        old, rows = self.snap, self.rows
        owners, heads, head_macs = dict(old.owners), dict(old.heads), dict(old.head_macs)
        secrets, exports = dict(old.secrets), dict(old.exports)
        for r in rows["namespaces"]:
            owners[r["name"]] = r["owner"]
        for r in (*rows["heads"], *rows["moves"]):
            head = Head(r["namespace"], r["name"], r["version"], r["hash"], r["creator"])
            heads[(head.namespace, head.name)] = head
            head_macs[(head.namespace, head.name)] = r["mac"]
        for r in rows["secrets_gone"]:
            secrets.pop((r["namespace"], r["session"], r["name"]), None)
        for r in rows["secrets"]:
            secrets[(r["namespace"], r["session"], r["name"])] = r["mac"]
        for r in rows["exports_gone"]:
            exports.pop(_export_key(r), None)
        for r in rows["exports"]:
            exports[_export_key(r)] = (r["owner"], r["mac"])
        return Snapshot(self.integ.fold(old.digest, self.delta), owners, heads, head_macs,
                        secrets, exports)


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
                   planned: dict[str, dict[str, Material]] | None = None,
                   stored: dict[str, str] | None = None) -> Prepared:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    if identity is None:
        raise _deny(cas, 401, "creating a session needs a registered client certificate", **where)
    if doc.predecessor is not None:
        raise Refusal(422, "a new session has no predecessor; leave `predecessor` out")
    writes, _ = _plan_secrets(cas, namespace, doc, planned, stored)
    return Prepared(namespace, doc, session_hash(doc), writes, set(), None)


def create(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None) -> SessionInfo:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    p = prepare_create(cas, namespace, doc, identity)
    assert identity is not None
    try:
        with cas.write() as conn:
            w = Writes(conn, cas)
            info = w.create(p, identity)
            w.flush()
        if w.after is not None:
            cas.remember(w.after)
        return info
    except IntegrityError:
        raise _deny(
            cas, 409, f"session {namespace}/{doc.name} was created concurrently", **where
        ) from None
    except Refusal as r:
        cas.audit_event("denied", outcome="denied", reason=r.reason, op="create", **where)
        raise


def prepare_update(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None,
                   planned: dict[str, dict[str, Material]] | None = None,
                   stored: dict[str, str] | None = None) -> Prepared:
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
    writes, removed = _plan_secrets(cas, namespace, doc, planned, stored)
    return Prepared(namespace, doc, session_hash(doc), writes, removed, head)


def update(cas: Cas, namespace: str, doc: SessionDoc, identity: str | None) -> SessionInfo:
    where = {"namespace": namespace, "session": doc.name, "actor": identity}
    p = prepare_update(cas, namespace, doc, identity)
    try:
        with cas.write() as conn:
            w = Writes(conn, cas)
            info = w.update(p, identity)
            w.flush()
        if w.after is not None:
            cas.remember(w.after)
        return info
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
