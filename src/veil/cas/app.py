"""CAS's HTTP API (FastAPI). Request and response types live here, the logic in its modules.

The caller's identity is the hash of the public key in its client certificate, which the TLS
layer already verified against CAS's client CA (see `veil.cas.server`); requests without one
have no identity and may only attest and register.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Body, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from veil import __version__
from veil.cas import attest, batch, http_errors, pki, ratelimit, sessions
from veil.cas.core import Cas, Refusal, Tampered, now_iso
from veil.cas.integrity import Counter
from veil.cas.state import CasFiles, counter_store, load_keyring
from veil.cas.store import clients, make_engine, make_reader, write_gate
from veil.cas.verifiers import Evidence
from veil.errors import ManifestError
from veil.session.load import session_from_data

__all__ = ["app_from_env", "create_app"]

NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
Name = Annotated[str, Field(pattern=NAME, max_length=200)]
# NAMESPACE/SESSION/SERVICE, each a NAME: checked here so that no odd text (NUL, `..`, control
# characters) reaches a database query
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
BASE64 = r"^[A-Za-z0-9+/]*={0,2}$"
ConfigId = Annotated[str, Field(pattern=f"^{_PART}/{_PART}/{_PART}$", max_length=600)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NonceRequest(_In):
    config_id: ConfigId


class NonceResponse(BaseModel):
    nonce: str
    expires_in: int


class EvidenceIn(_In):
    config_id: ConfigId
    measurement: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    nonce: Annotated[str, Field(pattern=BASE64, max_length=64)]
    platform: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=40)]
    report: Annotated[str, Field(pattern=BASE64, max_length=1 << 16)]


class InjectedFile(BaseModel):
    path: str
    content: str
    mode: str


class Configuration(BaseModel):
    env: dict[str, str]
    argv: list[str]
    pwd: str
    files: list[InjectedFile]


class RegisterRequest(_In):
    csr: Annotated[str, Field(max_length=8192)]


class RegisterResponse(BaseModel):
    certificate: str
    identity: str


class SessionWritten(BaseModel):
    namespace: str
    name: str
    version: int
    hash: str


class CurrentRequest(_In):
    names: list[Name] = Field(max_length=batch.MAX_SESSIONS)
    # name -> the content hash the caller holds: a session saying the same comes back without
    # its document
    known: dict[Name, Annotated[str, Field(pattern="^[0-9a-f]{64}$")]] = Field(
        default_factory=dict, max_length=batch.MAX_SESSIONS)


class TransactionRequest(_In):
    sessions: list[dict[str, Any]] = Field(max_length=batch.MAX_SESSIONS)


class TransactionWritten(BaseModel):
    written: list[SessionWritten]


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _identity(request: Request) -> str | None:
    der = getattr(request.state, "veil_peer_cert", None)
    return pki.identity_of_cert(der) if der else None


def create_app(cas: Cas, rate_scale: float = 1.0) -> FastAPI:
    """The API of `cas`; `rate_scale` multiplies the per-source rate limits (tests that
    register hundreds of clients from one address raise it)."""
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        denials.flush()  # refusals still only counted
        auditor.shutdown(wait=True)
        cas.integrity.counter.flush()  # the high-water mark of what this worker saw

    app = FastAPI(
        lifespan=lifespan,
        title="Veil CAS",
        version=__version__,
        description="Configuration and Attestation Service: sessions, secrets, attestation.",
        responses=http_errors.ERROR_RESPONSES,
    )
    http_errors.install(app)

    @app.exception_handler(Refusal)
    async def _refusal(_req: Request, exc: Refusal) -> JSONResponse:
        return JSONResponse({"detail": {"reason": exc.reason, **exc.extra}}, exc.status)

    @app.exception_handler(Tampered)
    async def _tampered(req: Request, exc: Tampered) -> JSONResponse:
        # recorded in the audit log when the log itself is intact (a rolled-back or changed
        # state row refuses every write, that one included)
        def record() -> None:
            with contextlib.suppress(Tampered, SQLAlchemyError):
                cas.audit_event("tampered", outcome="refused", reason=exc.reason, path=req.url.path)

        await run_in_threadpool(record)
        print(f"veil cas: integrity check failed: {exc.reason}", file=sys.stderr, flush=True)
        return JSONResponse({"detail": {"reason": exc.reason}}, exc.status)

    @app.exception_handler(ManifestError)
    async def _invalid(_req: Request, exc: ManifestError) -> JSONResponse:
        problems = [
            {"path": p.path, "message": p.message, "allowed": p.allowed} for p in exc.problems
        ]
        reason = "; ".join(f"{p.path}: {p.message}" for p in exc.problems)
        return JSONResponse({"detail": {"reason": reason, "problems": problems}}, 422)

    @app.exception_handler(SQLAlchemyError)
    async def _db(_req: Request, exc: SQLAlchemyError) -> JSONResponse:
        reason = "the CAS database is unavailable; retry later"
        return JSONResponse({"detail": {"reason": reason}}, 503)

    # anonymous writes, per source address (veil.cas.ratelimit): refused in the middleware
    # while a source is over its rate; what passes runs its lookups and writes in threads of
    # its own (two), so the flood never occupies the pool or the audit writer legitimate
    # requests use
    k = rate_scale
    registrations = ratelimit.Bucket("registrations", rate=0.5 * k, burst=30 * k)
    unknown_ids = ratelimit.Bucket(
        "nonce requests for unknown config ids", rate=5 * k, burst=20 * k
    )
    anonymous = anyio.CapacityLimiter(2)
    auditor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="veil-denials")

    def record_denial(**fields: Any) -> None:
        with contextlib.suppress(Tampered, SQLAlchemyError):
            cas.audit_event("denied", outcome="denied", **fields)

    def record_later(**fields: Any) -> None:
        auditor.submit(record_denial, **fields)

    denials = ratelimit.Aggregator(record_later)
    hold = ratelimit.Hold()
    app.add_middleware(
        ratelimit.Gate,
        registrations=registrations,
        unknown_ids=unknown_ids,
        denials=denials,
        maybe_named=lambda config_id: attest.maybe_named(cas, config_id),
        hold=hold,
    )

    @app.exception_handler(ratelimit.Limited)
    async def _limited(_req: Request, exc: ratelimit.Limited) -> JSONResponse:
        await hold()
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": {"reason": exc.reason}}, 429, headers=headers)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/clients", response_model=RegisterResponse)
    async def register(body: RegisterRequest) -> RegisterResponse:
        """Sign a client's CSR. Registration grants nothing: access comes from sessions.
        (The rate per source is taken in `ratelimit.Gate`.)"""
        return await anyio.to_thread.run_sync(_register, body, limiter=anonymous)

    def _register(body: RegisterRequest) -> RegisterResponse:
        try:
            cert, identity = pki.issue_client_cert(
                body.csr.encode(), cas.keys.client_ca_key, cas.keys.client_ca_pem
            )
        except ValueError as err:
            raise Refusal(400, f"not a valid CSR: {err}") from None
        try:
            with cas.write() as conn:
                conn.execute(insert(clients).values(identity=identity, registered=now_iso()))
        except IntegrityError:
            pass  # registering again (a renewed certificate) is fine
        cas.audit_event("register", outcome="ok", actor=identity)
        return RegisterResponse(certificate=cert.decode(), identity=identity)

    @app.get("/v1/identity")
    def whoami(request: Request) -> dict[str, str | None]:
        return {"identity": _identity(request)}

    @app.post("/v1/namespaces/{namespace}/sessions", response_model=SessionWritten, status_code=201)
    def create_session(
        namespace: Name, request: Request, document: dict[str, Any] = Body(...)
    ) -> SessionWritten:
        doc = session_from_data(document, file="request body")
        info = sessions.create(cas, namespace, doc, _identity(request))
        return SessionWritten(**info.__dict__)

    @app.put("/v1/namespaces/{namespace}/sessions/{name}", response_model=SessionWritten)
    def update_session(
        namespace: Name, name: Name, request: Request, document: dict[str, Any] = Body(...)
    ) -> SessionWritten:
        doc = session_from_data(document, file="request body")
        if doc.name != name:
            raise Refusal(422, f"the document names session {doc.name!r}, the path {name!r}")
        info = sessions.update(cas, namespace, doc, _identity(request))
        return SessionWritten(**info.__dict__)

    @app.post("/v1/namespaces/{namespace}/current")
    def current_sessions(
        namespace: Name, body: CurrentRequest, request: Request
    ) -> dict[str, dict[str, Any] | None]:
        """The current version of each named session, null where none exists."""
        return batch.current(cas, namespace, body.names, _identity(request), body.known)

    @app.post("/v1/namespaces/{namespace}/transaction", response_model=TransactionWritten)
    def transaction(namespace: Name, body: TransactionRequest, request: Request
                    ) -> TransactionWritten:
        """Create (no predecessor) or update (predecessor = current hash) every session in one
        transaction: all of them or none; a refusal names the session."""
        docs = [session_from_data(d, file=f"request body, sessions[{i}]")
                for i, d in enumerate(body.sessions)]
        infos = batch.commit(cas, namespace, docs, _identity(request))
        return TransactionWritten(written=[SessionWritten(**i.__dict__) for i in infos])

    @app.get("/v1/namespaces/{namespace}/sessions/{name}")
    def read_session(namespace: Name, name: Name, request: Request) -> dict[str, Any]:
        return sessions.read(cas, namespace, name, _identity(request))

    @app.get("/v1/namespaces/{namespace}/sessions/{name}/history")
    def session_history(namespace: Name, name: Name, request: Request) -> list[dict[str, Any]]:
        return sessions.history(cas, namespace, name, _identity(request))

    # JSONResponse skips re-validating our own output.
    # A nonce for a config id seen within the last seconds needs neither the database nor a
    # thread: answered on the event loop (half of all attestation requests).
    @app.post("/v1/attestation/nonce", response_model=NonceResponse)
    async def nonce(body: NonceRequest, request: Request) -> JSONResponse:
        if attest.known_config_id(cas, body.config_id):
            return JSONResponse(attest.new_nonce(cas, body.config_id))
        try:
            out = await anyio.to_thread.run_sync(
                attest.issue_nonce, cas, body.config_id, False, limiter=anonymous
            )
        except Refusal as r:
            source = _source(request)
            denials.note(source, "nonce", op="nonce", config_id=body.config_id, reason=r.reason)
            unknown_ids.take(source)
            raise
        return JSONResponse(out)

    # On the event loop: the write happens in the group committer's thread (attest.py), so
    # the request waits for its commit without occupying a pool thread.
    @app.post("/v1/attestation/provision", response_model=Configuration)
    async def provision(body: EvidenceIn) -> JSONResponse:
        evidence = Evidence(**body.model_dump())
        return JSONResponse(await attest.provision_async(cas, evidence))

    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker: `VEIL_CAS_DIR` and `VEIL_CAS_DB` say what to serve."""
    files = CasFiles(Path(os.environ["VEIL_CAS_DIR"]))
    url = os.environ.get("VEIL_CAS_DB") or files.default_db_url
    engine = make_engine(url)
    keys = load_keyring(files)
    cas = Cas(
        engine,
        keys,
        make_reader(url, engine),
        write_gate(url),
        counter=Counter(counter_store(files, keys)),
    )
    app = create_app(cas, float(os.environ.get("VEIL_CAS_RATE_SCALE") or 1))
    # The collector's full passes over every object loaded at start (FastAPI, pydantic,
    # SQLAlchemy) were most of the latency tail: freeze those and collect young objects
    # less often (p99 at 32 connections 28 -> 14 ms in bench/bench_cas.py).
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)
    return app
