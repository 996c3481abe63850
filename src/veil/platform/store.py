"""The job store (SQLAlchemy Core): SQLite by default, PostgreSQL for several platform processes.

The queue is the `builds` table itself. A worker claims the oldest queued build with
`SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL), or inside a `BEGIN IMMEDIATE` transaction
(SQLite, which serialises writers), and moves it to `running` in the same transaction, so every
build is claimed exactly once however many processes share the database. A running build carries
the claiming worker and a heartbeat; a build whose heartbeat stops (its process was killed) is
marked failed with the reason by whichever process notices first, and every state change after
that is refused because it is made only `WHERE status = 'running' AND worker = <claimer>`.

Logs are stored as chunks (`build_logs`), so any process can stream any build's log.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from veil.errors import OperationalError, UserError

__all__ = ["TERMINAL", "BuildRow", "JobStore", "make_engine"]

metadata = MetaData()

builds = Table(
    "platform_builds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("namespace", String(63), nullable=False, index=True),
    Column("image_name", String(2000), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("request", Text, nullable=False),  # JSON, secret build args by name only
    Column("sealed", Text, nullable=True),  # the secret build args, sealed; dropped at the end
    Column("created", Float, nullable=False, index=True),
    Column("started", Float, nullable=True),
    Column("finished", Float, nullable=True),
    Column("heartbeat", Float, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("error", Text, nullable=True),
    Column("digests", Text, nullable=True),  # JSON registry -> digest
    Column("images", Text, nullable=True),  # JSON list of pushed references
)

build_logs = Table(
    "platform_build_logs",
    metadata,
    Column("build_id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    PrimaryKeyConstraint("build_id", "seq"),
)

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class BuildRow:
    id: str
    namespace: str
    image_name: str
    status: str
    request: dict[str, Any]
    sealed: str | None
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    worker: str | None
    cancel_requested: bool
    error: str | None
    digests: dict[str, str]
    images: list[str]

    @classmethod
    def of(cls, row: Any) -> BuildRow:
        m = row._mapping
        return cls(
            id=m["id"], namespace=m["namespace"], image_name=m["image_name"],
            status=m["status"], request=json.loads(m["request"]), sealed=m["sealed"],
            created=m["created"], started=m["started"], finished=m["finished"],
            heartbeat=m["heartbeat"], worker=m["worker"],
            cancel_requested=bool(m["cancel_requested"]), error=m["error"],
            digests=json.loads(m["digests"] or "{}"), images=json.loads(m["images"] or "[]"),
        )

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN IMMEDIATE below decides
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Open (and create the tables of) the job store at `url`."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, pool_size=8, max_overflow=16)
            _sqlite_setup(engine)
        else:
            engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as err:
        raise UserError(f"cannot use database URL: {err}",
                        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB") from None
    try:
        metadata.create_all(engine, checkfirst=True)
    except SQLAlchemyError as err:
        # two processes creating the tables at once: the loser sees the winner's tables
        text = str(err)
        if "already exists" not in text and "duplicate key" not in text:
            raise OperationalError(
                f"cannot open the platform's job store: {getattr(err, 'orig', err)}",
                hint="check that the database server runs and the URL names it") from None
    return engine


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.skip_locked = engine.dialect.name == "postgresql"

    # -- submitting and reading ------------------------------------------------------------
    def submit(self, request: dict[str, Any], sealed: str | None) -> str:
        build_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(insert(builds).values(
                id=build_id, namespace=request["namespace"], image_name=request["image_name"],
                status="queued", request=json.dumps(request, sort_keys=True), sealed=sealed,
                created=time.time(), cancel_requested=False,
            ))
        return build_id

    def get(self, build_id: str) -> BuildRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(builds).where(builds.c.id == build_id)).first()
        return BuildRow.of(row) if row else None

    def list_builds(self, namespace: str | None = None, status: str | None = None,
             limit: int = 100) -> list[BuildRow]:
        q = select(builds).order_by(builds.c.created.desc(), builds.c.id).limit(limit)
        if namespace:
            q = q.where(builds.c.namespace == namespace)
        if status:
            q = q.where(builds.c.status == status)
        with self.engine.connect() as conn:
            return [BuildRow.of(r) for r in conn.execute(q)]

    def logs(self, build_id: str, after: int = -1) -> list[tuple[int, str]]:
        q = (select(build_logs.c.seq, build_logs.c.text)
             .where(build_logs.c.build_id == build_id, build_logs.c.seq > after)
             .order_by(build_logs.c.seq))
        with self.engine.connect() as conn:
            return [(int(r[0]), str(r[1])) for r in conn.execute(q)]

    # -- the queue -------------------------------------------------------------------------
    def claim(self, worker: str) -> BuildRow | None:
        """Move the oldest queued build to `running` for `worker`; None when none is queued."""
        pick = (select(builds.c.id).where(builds.c.status == "queued")
                .order_by(builds.c.created, builds.c.id).limit(1))
        if self.skip_locked:
            pick = pick.with_for_update(skip_locked=True)
        now = time.time()
        with self.engine.begin() as conn:
            build_id = conn.execute(pick).scalar()
            if build_id is None:
                return None
            conn.execute(update(builds).where(builds.c.id == build_id).values(
                status="running", worker=worker, started=now, heartbeat=now))
            row = conn.execute(select(builds).where(builds.c.id == build_id)).first()
        return BuildRow.of(row)

    def heartbeat(self, worker: str, ids: Iterable[str]) -> set[str]:
        """Renew the lease of `worker`'s running builds; returns those asked to cancel."""
        ids = list(ids)
        if not ids:
            return set()
        mine = and_(builds.c.id.in_(ids), builds.c.worker == worker,
                    builds.c.status == "running")
        with self.engine.begin() as conn:
            conn.execute(update(builds).where(mine).values(heartbeat=time.time()))
            rows = conn.execute(select(builds.c.id, builds.c.cancel_requested, builds.c.status)
                                .where(builds.c.id.in_(ids))).all()
        # a build that is no longer ours and running (reaped) is cancelled here too
        return {r[0] for r in rows if r[1] or r[2] != "running"}

    def append_log(self, build_id: str, seq: int, text: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(build_logs).values(build_id=build_id, seq=seq, text=text))

    def finish(self, build_id: str, worker: str, status: str, *, error: str | None = None,
               digests: dict[str, str] | None = None, images: list[str] | None = None) -> bool:
        """Record the outcome; False when the build was no longer this worker's."""
        assert status in TERMINAL
        with self.engine.begin() as conn:
            done = conn.execute(update(builds).where(
                builds.c.id == build_id, builds.c.worker == worker,
                builds.c.status == "running",
            ).values(status=status, finished=time.time(), error=error, sealed=None,
                     digests=json.dumps(digests or {}, sort_keys=True),
                     images=json.dumps(images or []))).rowcount
        return bool(done)

    def cancel(self, build_id: str) -> BuildRow | None:
        """Cancel a queued build at once; ask the worker of a running one to stop it."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(update(builds).where(
                builds.c.id == build_id, builds.c.status == "queued",
            ).values(status="cancelled", finished=now, sealed=None, error="cancelled before it "
                     "started"))
            conn.execute(update(builds).where(
                builds.c.id == build_id, builds.c.status == "running",
            ).values(cancel_requested=True))
        return self.get(build_id)

    def reap(self, lease: float, dead_workers: Iterable[str] = ()) -> list[str]:
        """Mark failed the running builds whose worker stopped: no heartbeat for `lease`
        seconds, or a worker known to be dead. Returns their ids."""
        now = time.time()
        stale = builds.c.heartbeat < now - lease
        dead = list(dead_workers)
        cond = and_(builds.c.status == "running",
                    or_(stale, builds.c.worker.in_(dead)) if dead else stale)
        with self.engine.begin() as conn:
            rows = conn.execute(select(builds.c.id, builds.c.worker, builds.c.heartbeat)
                                .where(cond)).all()
            for build_id, worker, beat in rows:
                age = now - (beat or now)
                why = (f"the worker running it ({worker}) stopped: no heartbeat for {age:.0f} s"
                       if worker not in dead else
                       f"the worker running it ({worker}) was stopped (its process is gone)")
                conn.execute(update(builds).where(
                    builds.c.id == build_id, builds.c.status == "running",
                    builds.c.worker == worker,
                ).values(status="failed", finished=now, sealed=None,
                         error=f"interrupted: {why}; submit it again"))
        return [r[0] for r in rows]

    def running_workers(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(
                select(builds.c.worker).where(builds.c.status == "running").distinct())]

    def finished_before(self, when: float) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(builds.c.id).where(
                builds.c.status.in_(TERMINAL), builds.c.finished < when))]
