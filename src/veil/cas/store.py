"""CAS's tables (SQLAlchemy Core): SQLite file by default, PostgreSQL for several replicas.

Concurrency is settled by the database, so any number of CAS processes can share one:
- `session_heads` holds the current version of each session; an update changes the row only
  `WHERE hash = predecessor`, so of two updates with the same predecessor exactly one wins;
- `used_nonces` has the nonce as primary key, so a replayed nonce fails to insert;
- `audit_head` is one row that every audit append locks, which keeps the chain linear.
SQLite transactions start with BEGIN IMMEDIATE for the same serial order.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.exc import OperationalError as SAOperationalError

from veil.errors import OperationalError, UserError

__all__ = [
    "FileGate",
    "audit",
    "audit_head",
    "clients",
    "exports",
    "make_engine",
    "make_reader",
    "metadata",
    "namespaces",
    "secrets_t",
    "session_heads",
    "session_versions",
    "used_nonces",
    "write_gate",
]

metadata = MetaData()

namespaces = Table(
    "namespaces",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("created", String(40), nullable=False),
    Column("mac", String(64), nullable=False),
)

session_heads = Table(
    "session_heads",
    metadata,
    Column("namespace", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("creator", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
    PrimaryKeyConstraint("namespace", "name"),
)

session_versions = Table(
    "session_versions",
    metadata,
    Column("namespace", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("hash", String(64), nullable=False, index=True),
    Column("predecessor", String(64), nullable=True),
    Column("document", Text, nullable=False),  # canonical JSON, explicit values left out
    Column("author", String(64), nullable=False),
    Column("created", String(40), nullable=False),
    Column("mac", String(64), nullable=False),
    PrimaryKeyConstraint("namespace", "name", "version"),
)

secrets_t = Table(
    "secrets",
    metadata,
    Column("namespace", String(200), nullable=False),
    Column("session", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("created", String(40), nullable=False),
    Column("mac", String(64), nullable=False),
    PrimaryKeyConstraint("namespace", "session", "name"),
)

# who may import which secret, each bound to the identity that owns the importing namespace
# (see `veil.cas.sessions._write_exports`)
exports = Table(
    "exports",
    metadata,
    Column("namespace", String(200), nullable=False),
    Column("session", String(200), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("target_namespace", String(200), nullable=False),
    Column("target_session", String(200), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
    PrimaryKeyConstraint("namespace", "session", "secret", "target_namespace", "target_session"),
)

used_nonces = Table(
    "used_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("expires", BigInteger, nullable=False, index=True),
)

clients = Table(
    "clients",
    metadata,
    Column("identity", String(64), primary_key=True),
    Column("registered", String(40), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry", Text, nullable=False),  # canonical JSON of the event
    Column("prev", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("mac", String(64), nullable=False),
    # the state: XOR of the members of every authenticated row (veil.cas.integrity), and the
    # MAC of this row itself (empty only for the genesis row, seq 0)
    Column("digest", String(64), nullable=False),
    Column("row_mac", String(64), nullable=False),
)

GENESIS = "0" * 64


def _sqlite_setup(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is off so that BEGIN IMMEDIATE below rules
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a killed process (what "acknowledged" means for a server);
        # FULL would also survive power loss at several times the commit cost
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # writers take the lock up front (no upgrade deadlocks); readers never wait for it
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_reader(url: str, writer: Engine) -> Engine:
    """An engine for read-only work: on SQLite one whose transactions take no write lock."""
    if not url.startswith("sqlite"):
        return writer
    engine = create_engine(url, pool_size=8, max_overflow=16)
    _sqlite_setup(engine, immediate=False)
    return engine


def make_engine(url: str) -> Engine:
    """Open (and create the tables of) the database at `url`."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=False)
            _sqlite_setup(engine, immediate=True)
        else:
            engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as err:
        raise UserError(
            f"cannot use database URL: {err}",
            hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        ) from None
    try:
        metadata.create_all(engine, checkfirst=True)
        with engine.begin() as conn:
            if conn.execute(select(audit_head.c.id)).first() is None:
                conn.execute(
                    insert(audit_head).values(id=1, seq=0, mac=GENESIS, digest=GENESIS, row_mac="")
                )
    except SAOperationalError as err:
        raise OperationalError(
            f"cannot open the CAS database: {err.orig}",
            hint="check that the database server runs and the URL names it",
        ) from None
    except Exception as err:
        # two replicas creating tables at once: the loser sees the winner's table
        if "already exists" not in str(err) and "duplicate key" not in str(err):
            raise
    columns = {c["name"] for c in inspect(engine).get_columns("audit_head")}
    if "row_mac" not in columns:
        raise OperationalError(
            "the CAS database was made by a CAS without row authentication",
            hint="start this CAS with a new database and create the sessions again",
        )
    return engine


@contextmanager
def _no_gate() -> Iterator[None]:
    yield


class FileGate:
    """A write lock for one SQLite file: a thread lock (threads of this process) and `flock`
    on `<db>.writelock` (worker processes and replicas). Used as a context manager factory
    (`with gate():`), or with `acquire(blocking=False)` by code that must not block."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.Lock()
        # the lock file stays open (opening it per write cost ~20 us); reopened in a forked
        # child, whose copy would share the parent's lock
        self._fds: dict[int, int] = {}

    def _fd(self) -> int:
        fd = self._fds.get(os.getpid())
        if fd is None:
            self._fds.clear()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fds[os.getpid()] = fd
        return fd

    def acquire(self, blocking: bool = True) -> bool:
        if not self._local.acquire(blocking):
            return False
        try:
            fcntl.flock(self._fd(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            self._local.release()
            return False
        except BaseException:
            self._local.release()
            raise
        return True

    def release(self) -> None:
        try:
            fcntl.flock(self._fd(), fcntl.LOCK_UN)
        finally:
            self._local.release()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def write_gate(url: str) -> Any:
    """Serializes write transactions on SQLite without SQLite's busy loop.

    SQLite makes a waiting writer sleep and poll (up to tens of milliseconds per try); with a
    lock of our own, one per process (threads) and one per file (worker processes and replicas,
    `flock`), a writer wakes the moment the previous one commits. PostgreSQL needs none.
    """
    if not url.startswith("sqlite") or ":memory:" in url:
        return _no_gate
    from sqlalchemy.engine import make_url

    return FileGate(f"{make_url(url).database}.writelock")
