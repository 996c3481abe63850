"""Nonces, attestation and provisioning (docs/attestation-protocol.md).

A nonce is 32 bytes: expiry (4, big-endian seconds), randomness (12) and an HMAC (16) over those
and the config id, under a key derived from the master key. Any CAS replica can check a nonce
without a database write at issue time; single use is enforced at provisioning by inserting the
nonce into `used_nonces` (primary key) in the same transaction as the audit entry, so a replay
fails even when it reaches another replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shlex
import struct
import time
from typing import Any

from sqlalchemy import Connection, bindparam, delete
from starlette.concurrency import run_in_threadpool

from veil.cas import audit, fastsql, limits
from veil.cas.core import Cas, Head, Refusal, Tampered
from veil.cas.groupcommit import Job
from veil.cas.integrity import Snapshot
from veil.cas.secrets import Material
from veil.cas.sessions import import_source
from veil.cas.store import used_nonces
from veil.cas.substitute import UnknownReference, substitute
from veil.cas.verifiers import Claims, Evidence, Refused, judge, verifier_for
from veil.session.model import SessionDoc

__all__ = [
    "KNOWN_TTL",
    "NONCE_TTL",
    "issue_nonce",
    "known_config_id",
    "new_nonce",
    "provision",
    "provision_async",
]

NONCE_TTL = 60
KNOWN_TTL = 2.0
# a replay inserts nothing (rowcount 0) instead of failing, so it does not abort the batch
_USE_NONCE_SQL = (
    "INSERT INTO used_nonces (nonce, expires) VALUES (:nonce, :expires) ON CONFLICT DO NOTHING"
)
_SWEEP_EVERY = 1024
_SWEEP = delete(used_nonces).where(used_nonces.c.expires < bindparam("cutoff"))


def _split_config_id(config_id: str) -> tuple[str, str, str]:
    parts = config_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise Refusal(400, "config_id must be NAMESPACE/SESSION/SERVICE")
    return parts[0], parts[1], parts[2]


def _nonce_mac(cas: Cas, config_id: str, body: bytes) -> bytes:
    return hmac.new(cas.keys.nonce, config_id.encode() + b"\0" + body, hashlib.sha256).digest()[:16]


def _service_session(
    cas: Cas, config_id: str, conn: Connection | None = None
) -> tuple[Head, SessionDoc, str]:
    ns, name, service = _split_config_id(config_id)
    head = cas.head(ns, name, conn)
    doc = cas.document(head) if head is not None else None
    if head is None or doc is None or doc.service(service) is None:
        raise Refusal(404, f"unknown config id {config_id!r}")
    return head, doc, service


def known_config_id(cas: Cas, config_id: str) -> bool:
    """True if `config_id` named a service within the last KNOWN_TTL seconds: then a nonce
    needs no database read. Only positive answers are remembered, so a new session is usable
    at once; a service removed by an update still gets nonces for that long, but provisioning
    always reads the current version, so it cannot attest."""
    seen = cas.known.get(config_id)
    return seen is not None and time.monotonic() - seen < KNOWN_TTL


def maybe_named(cas: Cas, config_id: str) -> bool:
    """Whether `config_id` may name a service, by what this process already holds in memory
    (no database read): a known config id, or a session in the last verified snapshot whose
    document, when cached, has that service. False only for ids that named nothing when that
    snapshot was taken (`veil.cas.ratelimit` refuses such ids from a source over its rate)."""
    if known_config_id(cas, config_id):
        return True
    snap = cas.last_snapshot
    parts = config_id.split("/")
    if snap is None or len(parts) != 3:
        return snap is None
    head = snap.heads.get((parts[0], parts[1]))
    if head is None:
        return False
    doc = cas.cached_document(head.hash)
    return doc is None or doc.service(parts[2]) is not None


def new_nonce(cas: Cas, config_id: str) -> dict[str, Any]:
    body = struct.pack(">I", int(time.time()) + NONCE_TTL) + os.urandom(12)
    nonce = base64.b64encode(body + _nonce_mac(cas, config_id, body)).decode()
    return {"nonce": nonce, "expires_in": NONCE_TTL}


def issue_nonce(cas: Cas, config_id: str, audit_refusal: bool = True) -> dict[str, Any]:
    """A nonce for a config id that names a service. A refusal is audited here unless the
    caller aggregates such entries itself (`audit_refusal=False`, see `veil.cas.ratelimit`)."""
    if known_config_id(cas, config_id):
        return new_nonce(cas, config_id)
    try:
        _service_session(cas, config_id)
    except Refusal as r:
        if audit_refusal:
            cas.audit_event(
                "denied", op="nonce", outcome="denied", config_id=config_id, reason=r.reason
            )
        raise
    if len(cas.known) > 100_000:
        cas.known.clear()
    cas.known[config_id] = time.monotonic()
    return new_nonce(cas, config_id)


def _check_nonce(cas: Cas, config_id: str, nonce: str) -> int:
    """The nonce's expiry, if CAS issued it for this config id and it has not expired. Only
    the canonical spelling is accepted (the one CAS issued): base64 leaves the last
    character's low bits unused, and every other spelling of the same bytes is refused, so a
    used nonce cannot come back in another spelling."""
    try:
        raw = base64.b64decode(nonce, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise Refusal(400, "the nonce is not base64") from None
    if len(raw) != 32:
        raise Refusal(400, "the nonce is not one this CAS issued")
    if base64.b64encode(raw).decode() != nonce:
        raise Refusal(400, "the nonce is not in canonical base64 (as CAS issued it)")
    body, mac = raw[:16], raw[16:]
    if not hmac.compare_digest(mac, _nonce_mac(cas, config_id, body)):
        raise Refusal(403, "the nonce was not issued by this CAS for this config id")
    (expires,) = struct.unpack(">I", body[:4])
    if expires < time.time():
        raise Refusal(403, "the nonce has expired; ask for a new one")
    return int(expires)


def _materials(cas: Cas, snap: Snapshot, head: Head, doc: SessionDoc) -> dict[str, Material]:
    """Own secrets plus imported ones: the exporter must still export each to this session,
    bound to the identity that owns this namespace."""
    namespace = head.namespace
    out = cas.materials(namespace, doc.name, at=head.hash)
    owner = snap.owners.get(namespace)
    for s in doc.secrets:
        if s.import_ is None:
            continue
        src_ns, src_name, secret = import_source(s, namespace)
        bound = snap.exports.get((src_ns, src_name, secret, namespace, doc.name))
        if bound is None or bound[0] != owner:
            raise Refusal(403, f"secret {s.name!r} is no longer exported to this session")
        m = cas.materials(src_ns, src_name).get(secret)
        if m is None:
            raise Refusal(403, f"secret {s.name!r} has no value in {src_ns}/{src_name}")
        out[s.name] = m
    return out


def _configuration(
    cas: Cas, snap: Snapshot, head: Head, doc: SessionDoc, service: str
) -> dict[str, Any]:
    """The service's configuration, secrets substituted. A version's own secrets never change,
    so without imports (whose export is re-checked every time) it is cached per version."""
    if any(s.import_ is not None for s in doc.secrets):
        return _build_configuration(cas, snap, head, doc, service)
    key = (head.hash, head.namespace, head.name, service)
    config: dict[str, Any] | None = cas.configs.get(key)
    if config is None:
        config = _build_configuration(cas, snap, head, doc, service)
        cas.configs.put(key, config, _weight(config))
    return config


def _weight(config: dict[str, Any]) -> int:
    """About the bytes a configuration holds in memory."""
    n = sum(len(k) + len(v) for k, v in config["env"].items()) + sum(map(len, config["argv"]))
    return 512 + n + sum(len(f["path"]) + len(f["content"]) for f in config["files"])


def _build_configuration(
    cas: Cas, snap: Snapshot, head: Head, doc: SessionDoc, service: str
) -> dict[str, Any]:
    svc = doc.service(service)
    assert svc is not None
    mats = _materials(cas, snap, head, doc)
    size = limits.answer_size(doc, service, mats)
    if size > limits.ANSWER_MAX:  # a session written before the limit, or grown by imports
        raise Refusal(
            409,
            f"the session cannot be provisioned: the configuration would be about {size} bytes, "
            f"over the limit of {limits.ANSWER_MAX} bytes",
        )
    try:
        env = {k: substitute(v, mats) for k, v in sorted(svc.environment.items())}
        command = svc.command if isinstance(svc.command, list) else shlex.split(svc.command)
        argv = [substitute(a, mats) for a in command]
        files = []
        image = doc.image(svc.image_name)
        for f in image.injection_files if image else []:
            content = substitute(f.content, mats).encode()
            files.append(
                {"path": f.path, "content": base64.b64encode(content).decode(), "mode": f.mode}
            )
    except UnknownReference as err:
        raise Refusal(409, f"the session cannot be provisioned: {err}") from None
    return {"env": env, "argv": argv, "pwd": svc.pwd, "files": files}


def _checked(cas: Cas, evidence: Evidence) -> tuple[int, Claims | Refusal]:
    """The nonce and the evidence: no database, no lock (hardware evidence costs milliseconds
    of signature checks). Returns the nonce's expiry and the verified claims, or the
    verifier's refusal: a refused attempt still uses up its (valid) nonce. A nonce that is
    not valid raises."""
    _split_config_id(evidence.config_id)
    expires = _check_nonce(cas, evidence.config_id, evidence.nonce)
    try:
        return expires, verifier_for(evidence.platform, cas.verifiers).verify(evidence)
    except Refused as err:
        return expires, Refusal(403, str(err))


def _deny(conn: Connection, cas: Cas, evidence: Evidence, refusal: Refusal) -> Refusal:
    audit.append(
        conn,
        cas.integrity,
        "denied",
        op="provision",
        outcome="denied",
        reason=refusal.reason,
        measurement=evidence.measurement,
        config_id=evidence.config_id,
        platform=evidence.platform,
    )
    return refusal


def _use_nonce(conn: Connection, evidence: Evidence, expires: int) -> None:
    used = fastsql.execute(conn, _USE_NONCE_SQL, {"nonce": evidence.nonce, "expires": expires})
    if used.rowcount != 1:
        raise Refusal(403, "the nonce was already used (replayed evidence)")


def _write_job(cas: Cas, evidence: Evidence, expires: int, claims: Claims | Refusal) -> Job:
    """The transactional part, run by the group committer: use up the nonce (first: a refused
    attempt uses it up too), read the session's current version (inside the transaction, so
    an acknowledged update applies to every later provisioning), judge the claims against it,
    append the audit entry. A refusal writes nothing but the used nonce and its audit entry,
    and is returned, not raised (the batch goes on); so is a secret of this session that fails
    its integrity check, which concerns this request only."""

    def job(conn: Connection) -> dict[str, Any] | Refusal:
        try:
            _use_nonce(conn, evidence, expires)
            if isinstance(claims, Refusal):
                raise claims
            head, doc, service = _service_session(cas, evidence.config_id, conn)
            svc = doc.service(service)
            assert svc is not None
            try:
                measurement = judge(claims, doc.security.attestation, svc)
            except Refused as err:
                raise Refusal(403, str(err)) from None
            config = _configuration(cas, cas.snapshot(conn), head, doc, service)
        except Refusal as r:
            return _deny(conn, cas, evidence, r)
        except Tampered as err:
            return _deny(conn, cas, evidence, Refusal(500, err.reason))
        audit.append(
            conn,
            cas.integrity,
            "provision",
            outcome="ok",
            measurement=measurement,
            hash=head.hash,
            config_id=evidence.config_id,
            platform=evidence.platform,
            **_claims_fields(claims),
        )
        return config

    return job


def _refused_job(cas: Cas, evidence: Evidence, refusal: Refusal) -> Job:
    return lambda conn: _deny(conn, cas, evidence, refusal)


def _answer(cas: Cas, out: dict[str, Any] | Refusal) -> dict[str, Any]:
    if isinstance(out, Refusal):
        raise out
    _sweep(cas)
    return out


def provision(cas: Cas, evidence: Evidence) -> dict[str, Any]:
    """Check the evidence, then use the nonce and audit in the next group commit."""
    try:
        job = _write_job(cas, evidence, *_checked(cas, evidence))
    except Refusal as r:
        job = _refused_job(cas, evidence, r)
    return _answer(cas, cas.committer.run(job))


async def provision_async(cas: Cas, evidence: Evidence) -> dict[str, Any]:
    """`provision` for the event loop: simulation evidence is checked in place (microseconds),
    hardware evidence in a worker thread; the request then waits for its batch's commit
    without holding a thread."""
    try:
        if evidence.platform == "simulation":
            checked = _checked(cas, evidence)
        else:
            checked = await run_in_threadpool(_checked, cas, evidence)
        job = _write_job(cas, evidence, *checked)
    except Refusal as r:
        job = _refused_job(cas, evidence, r)
    return _answer(cas, await cas.committer.run_async(job))


def _claims_fields(claims: Claims) -> dict[str, Any]:
    """What the audit entry records of hardware claims (simulation has none)."""
    if not claims.hardware:
        return {}
    return {"launch": claims.launch, "tcb": claims.tcb, "debug": claims.debug}


_counter = 0


def _sweep(cas: Cas) -> None:
    """Forget used nonces that have expired anyway (now and then, not on every call)."""
    global _counter
    _counter += 1
    if _counter % _SWEEP_EVERY:
        return
    # a job of the next batch, not waited for: a request on the event loop must not block on
    # the write lock
    cutoff = int(time.time()) - 5
    cas.committer.submit(lambda conn: conn.execute(_SWEEP, {"cutoff": cutoff}))
