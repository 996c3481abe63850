"""The database is not trusted: attacks that edit the real database file of a running CAS.

Each test starts its own CAS (the attacks leave its database broken on purpose), edits rows with
sqlite3 as someone with write access to the file would, and checks that CAS refuses to act on
the change (500 naming it, an audit entry) — and, as the control, that an untouched database
survives the same restarts.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.cas.conftest import REPO, CasServer
from tests.cas.helpers import M1, M2, Launcher, session
from veil.errors import OperationalError, UserError

pytestmark = pytest.mark.integration

NS = "shop"


class Rig:
    """One CAS of its own, a client, a launcher, and the database file."""

    def __init__(
        self, factory: Callable[..., CasServer], tmp: Path, db_url: str | None = None
    ) -> None:
        self.factory = factory
        self.tmp = tmp
        self.db_url = db_url
        self.server = factory(db_url=db_url)
        self.alice = self.server.client(tmp / "alice")
        self.launcher = Launcher(self.server.addr, self.server.files.cert.read_bytes())

    @property
    def db(self) -> Path:
        return self.server.files.root / "cas.db"

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.db_url is not None:
            return self.psql(statement, *params)
        with sqlite3.connect(self.db) as conn:
            return conn.execute(statement, params).fetchall()

    def psql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """The statement through `psql`, as an operator with database access would run it."""
        assert self.db_url is not None
        url = make_url(self.db_url)
        for p in params:  # values of our own making: quoted as SQL literals
            statement = statement.replace("?", "'" + str(p).replace("'", "''") + "'", 1)
        out = subprocess.run(
            [
                "psql",
                "-h",
                str(url.host),
                "-p",
                str(url.port),
                "-U",
                str(url.username),
                "-d",
                str(url.database),
                "-At",
                "-F",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return [tuple(line.split("\t")) for line in out.stdout.splitlines() if line]

    def stop(self) -> None:
        # open keep-alive connections would hold up uvicorn's graceful shutdown
        self.close()
        self.server.stop()

    def restart(self) -> None:
        self.stop()
        self.server = self.factory(files=self.server.files, db_url=self.db_url)
        self.alice = self.server.client(self.tmp / "alice")
        self.launcher = Launcher(self.server.addr, self.server.files.cert.read_bytes())

    def verify(self) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "veil", "cas", "audit", "verify"]
        cmd += ["--state-dir", str(self.server.files.root)]
        if self.db_url is not None:
            cmd += ["--db", self.db_url]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)

    def reasons(self) -> list[str]:
        return [str(e.get("reason")) for e in self.events(None)]

    def events(self, event: str | None) -> list[dict[str, Any]]:
        rows = self.sql("SELECT entry FROM audit ORDER BY seq")
        entries = [json.loads(text) for (text,) in rows]
        return [e for e in entries if event is None or e["event"] == event]

    def close(self) -> None:
        self.launcher.close()
        self.alice.close()


@pytest.fixture
def rig(cas_factory: Callable[..., CasServer], tmp_path: Path) -> Iterator[Rig]:
    r = Rig(cas_factory, tmp_path)
    yield r
    r.stop()


def _refused_as_tampered(r: httpx.Response, what: str) -> None:
    assert r.status_code == 500, r.text
    assert what in r.json()["detail"]["reason"]


def test_changed_document_is_refused(rig: Rig) -> None:
    """Switching a stored production document to debug mode must not admit simulation."""
    rig.alice.create_session(NS, session(mode="production"))
    (text,) = rig.sql("SELECT document FROM session_versions")[0]
    doc = json.loads(text)
    doc["security"]["attestation"]["mode"] = "debug"
    doc["services"][0]["attestation"]["measurement"].append(M2)
    rig.sql("UPDATE session_versions SET document = ?", json.dumps(doc, sort_keys=True))
    r = rig.launcher.attest(f"{NS}/hello/app", M2)
    _refused_as_tampered(r, "changed outside CAS")
    assert "API_PASSWORD" not in r.text
    assert any("changed outside CAS" in reason for reason in rig.reasons())
    out = rig.verify()
    assert out.returncode == 1 and "session_versions" in out.stderr


def test_rolled_back_session_head_does_not_readmit_a_revoked_measurement(rig: Rig) -> None:
    doc = session()
    doc["services"][0]["attestation"]["measurement"] = [M1, M2]
    v1 = rig.alice.create_session(NS, doc)
    old = rig.sql("SELECT version, hash, mac FROM session_heads")[0]
    doc2 = session(predecessor=v1["hash"])  # M2 revoked
    rig.alice.update_session(NS, doc2)
    assert rig.launcher.attest(f"{NS}/hello/app", M2).status_code == 403
    rig.sql("UPDATE session_heads SET version = ?, hash = ?, mac = ?", *old)
    # the running CAS goes on with the state it verified: still refused
    assert rig.launcher.attest(f"{NS}/hello/app", M2).status_code == 403
    rig.restart()
    r = rig.launcher.attest(f"{NS}/hello/app", M2)
    _refused_as_tampered(r, "does not match its authenticated state")
    assert any("authenticated state" in reason for reason in rig.reasons())
    assert rig.verify().returncode == 1


def test_rewritten_owner_and_creator_hand_nothing_over(rig: Rig, tmp_path: Path) -> None:
    rig.alice.create_session(NS, session())
    with rig.server.client(tmp_path / "bob") as bob:
        rig.sql("UPDATE namespaces SET owner = ?", bob.identity())
        rig.sql("UPDATE session_heads SET creator = ?", bob.identity())
        # refused as the state verified before (403) or as a changed row (500)
        with pytest.raises((UserError, OperationalError), match=r"403|500"):
            bob.read_session(NS, "hello")
    rig.restart()
    with rig.server.client(tmp_path / "bob") as bob:
        with pytest.raises(OperationalError, match=r"500.*namespaces/shop was changed outside CAS"):
            bob.read_session(NS, "hello")
        with pytest.raises(OperationalError, match="500"):
            bob.create_session(NS, session(name="mine"))


def test_whole_database_rollback_is_detected(rig: Rig) -> None:
    doc = session()
    doc["services"][0]["attestation"]["measurement"] = [M1, M2]
    v1 = rig.alice.create_session(NS, doc)
    backup = rig.tmp / "backup.db"
    with sqlite3.connect(rig.db) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # a consistent copy, as an attacker's snapshot would be
    rig.alice.update_session(NS, session(predecessor=v1["hash"]))
    # control: a restart of an untouched database is fine
    rig.restart()
    assert rig.launcher.attest(f"{NS}/hello/app", M1).status_code == 200
    rig.stop()
    for extra in ("-wal", "-shm"):
        Path(f"{rig.db}{extra}").unlink(missing_ok=True)
    shutil.copy(backup, rig.db)
    rig.restart()
    r = rig.launcher.attest(f"{NS}/hello/app", M2)
    _refused_as_tampered(r, "rolled back")
    out = rig.verify()
    assert out.returncode == 1 and "rolled back" in out.stderr


def test_the_end_of_the_audit_log_cannot_be_cut(rig: Rig) -> None:
    rig.alice.create_session(NS, session())
    old_head = rig.sql("SELECT seq, mac, digest, row_mac FROM audit_head")[0]
    for _ in range(3):
        assert rig.launcher.attest(f"{NS}/hello/app").status_code == 200
    assert rig.verify().returncode == 0  # control
    rig.stop()
    rig.sql("DELETE FROM audit WHERE seq > ?", old_head[0])
    rig.sql("UPDATE audit_head SET seq = ?, mac = ?, digest = ?, row_mac = ?", *old_head)
    out = rig.verify()
    assert out.returncode == 1 and "rolled back" in out.stderr
    # emptying the log: the genesis head
    rig.sql("DELETE FROM audit")
    rig.sql("UPDATE audit_head SET seq = 0, mac = ?, digest = ?, row_mac = ''", "0" * 64, "0" * 64)
    out = rig.verify()
    assert out.returncode == 1 and "rolled back" in out.stderr


def test_a_corrupt_sealed_secret_fails_only_its_own_requests(rig: Rig) -> None:
    rig.alice.create_session(NS, session(name="broken"))
    rig.alice.create_session(NS, session(name="fine"))
    (sealed,) = rig.sql("SELECT sealed FROM secrets WHERE session = 'broken'")[0]
    flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
    rig.sql("UPDATE secrets SET sealed = ? WHERE session = 'broken'", flipped)
    ids = [f"{NS}/fine/app"] * 40 + [f"{NS}/broken/app"] * 10

    def one(config_id: str) -> httpx.Response:
        with Launcher(rig.server.addr, rig.server.files.cert.read_bytes()) as lau:
            return lau.attest(config_id)

    with ThreadPoolExecutor(25) as pool:
        results = list(pool.map(one, ids))
    fine = [r.status_code for r in results[:40]]
    broken = results[40:]
    assert fine == [200] * 40
    for r in broken:
        _refused_as_tampered(r, "sealed secret shop/broken/password was changed")
    assert len([e for e in rig.events("denied") if "sealed secret" in e["reason"]]) == 10


@pytest.fixture
def pg_rig(cas_factory: Callable[..., CasServer], pg_url: str, tmp_path: Path) -> Iterator[Rig]:
    name = "integrity_" + tmp_path.name.lower()[-20:].replace("-", "_")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    r = Rig(cas_factory, tmp_path, db_url=url)
    yield r
    r.stop()


def test_postgresql_rows_rolled_back_with_psql_are_detected(pg_rig: Rig) -> None:
    """The same attacks on a shared PostgreSQL: a session head put back, the log's end cut."""
    doc = session()
    doc["services"][0]["attestation"]["measurement"] = [M1, M2]
    v1 = pg_rig.alice.create_session(NS, doc)
    old = pg_rig.sql("SELECT version, hash, mac FROM session_heads")[0]
    old_head = pg_rig.sql("SELECT seq, mac, digest, row_mac FROM audit_head")[0]
    pg_rig.alice.update_session(NS, session(predecessor=v1["hash"]))
    assert pg_rig.launcher.attest(f"{NS}/hello/app", M1).status_code == 200  # control
    pg_rig.sql("UPDATE session_heads SET version = ?, hash = ?, mac = ?", *old)
    pg_rig.restart()
    r = pg_rig.launcher.attest(f"{NS}/hello/app", M2)
    _refused_as_tampered(r, "does not match its authenticated state")
    pg_rig.stop()
    pg_rig.sql("DELETE FROM audit WHERE seq > ?", old_head[0])
    pg_rig.sql("UPDATE audit_head SET seq = ?, mac = ?, digest = ?, row_mac = ?", *old_head)
    out = pg_rig.verify()
    assert out.returncode == 1 and "rolled back" in out.stderr
