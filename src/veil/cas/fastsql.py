"""Driver-level SQL for the attestation hot path.

SQLAlchemy Core spends ~35 us of Python per statement (even cached and compiled) around a
SQLite statement that itself takes a few; provisioning runs five per attestation. These helpers
run plain SQL on the DBAPI connection inside the caller's SQLAlchemy transaction, and turn
driver errors into SQLAlchemy's (IntegrityError, OperationalError) so callers and the 503
handler see one family of exceptions.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

__all__ = ["execute", "executemany", "for_update"]

_NAMED = re.compile(r":([A-Za-z_]\w*)")
_cache: dict[tuple[str, str], str] = {}


def _for(conn: Connection, sql: str) -> str:
    """`sql` with `:name` parameters, in the driver's style (sqlite3: as is; psycopg: %(name)s)."""
    style = conn.dialect.paramstyle
    key = (style, sql)
    out = _cache.get(key)
    if out is None:
        out = _NAMED.sub(r"%(\1)s", sql) if style in ("pyformat", "format") else sql
        _cache[key] = out
    return out


def for_update(conn: Connection) -> str:
    """Row lock clause: PostgreSQL needs it, SQLite (whole-database write lock) has none."""
    return "" if conn.dialect.name == "sqlite" else " FOR UPDATE"


def execute(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> Any:
    """Run one statement in `conn`'s transaction; returns the driver cursor."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(_for(conn, sql), params or {})
    except conn.dialect.loaded_dbapi.Error as err:
        raise DBAPIError.instance(sql, params, err, conn.dialect.loaded_dbapi.Error) from None
    return cur


def executemany(conn: Connection, sql: str, rows: list[dict[str, Any]]) -> None:
    """Run one statement for every row of `rows` in `conn`'s transaction: sqlite3 steps one
    prepared statement, psycopg2 sends the rows in pages (`execute_batch`). Row counts are
    not reported (psycopg2 reports the last page's only): a write that must change exactly
    one row runs on its own through `execute`."""
    if not rows:
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    stmt = _for(conn, sql)
    try:
        if conn.dialect.driver == "psycopg2":
            from psycopg2.extras import execute_batch

            execute_batch(cur, stmt, rows, page_size=200)
        else:
            cur.executemany(stmt, rows)
    except conn.dialect.loaded_dbapi.Error as err:
        raise DBAPIError.instance(sql, rows[:1], err, conn.dialect.loaded_dbapi.Error) from None
