"""A killed CAS loses no acknowledged write; no secret value reaches a log or the database file;
several CAS processes on one PostgreSQL serve the same sessions."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from tests.cas.conftest import CasServer
from tests.cas.helpers import Launcher, session
from veil.errors import UserError

pytestmark = pytest.mark.integration


def _secret_values(conf: dict[str, object]) -> list[bytes]:
    env = conf["env"]
    files = conf["files"]
    assert isinstance(env, dict) and isinstance(files, list)
    out = [env["API_PASSWORD"].encode(), env["GIVEN"].encode(), env["BLOB"].encode()]
    for f in files:
        content = base64.b64decode(f["content"])
        # the base64 body lines of a PEM private key, each long enough to be unique
        out += [line for line in content.splitlines() if len(line) >= 40 and b"-" not in line]
    return out


def test_no_secret_in_logs_or_database(
    cas_factory: Callable[..., CasServer], tmp_path: Path
) -> None:
    server = cas_factory()
    ns = "grep-" + uuid.uuid4().hex[:8]
    doc = session()
    doc["secrets"] += [
        {"name": "given", "kind": "explicit", "value": "explicit-value-" + uuid.uuid4().hex},
        {"name": "blob", "kind": "binary", "size": 24},
        {"name": "key", "kind": "private-key", "key_type": "EC"},
    ]
    doc["services"][0]["environment"].update(
        {"GIVEN": "$$SCONE::given$$", "BLOB": "$$SCONE::blob:hex$$"}
    )
    doc["images"][0]["injection_files"].append({"path": "/k", "content": "$$SCONE::key$$"})
    with server.client(tmp_path / "id") as c:
        out = c.create_session(ns, doc)
        c.read_session(ns, "hello")
        c.update_session(ns, {**doc, "predecessor": out["hash"]})
    lau = Launcher(server.addr, server.files.cert.read_bytes())
    conf = lau.attest(f"{ns}/hello/app").json()
    lau.close()
    values = _secret_values(conf)
    assert len(values) >= 4
    server.stop()  # flush everything: logs, WAL
    haystacks = {p: p.read_bytes() for p in server.files.root.parent.rglob("*") if p.is_file()}
    assert any(p.name == "cas.db" for p in haystacks)
    assert any(p.suffix == ".log" and b"provision" in h for p, h in haystacks.items())
    for value in values:
        for variant in (value, value.hex().encode(), base64.b64encode(value)):
            hits = [str(p) for p, h in haystacks.items() if variant in h]
            assert not hits, f"a secret value was found in {hits}"


def test_restart_loses_no_acknowledged_write(
    cas_factory: Callable[..., CasServer], tmp_path: Path
) -> None:
    server = cas_factory()
    ns = "restart-" + uuid.uuid4().hex[:8]
    acked: dict[str, str] = {}
    with server.client(tmp_path / "id") as c:
        for i in range(20):
            out = c.create_session(ns, session(name=f"s{i}"))
            acked[f"s{i}"] = out["hash"]
        out = c.update_session(ns, session(name="s0", predecessor=acked["s0"]))
        acked["s0"] = out["hash"]
    lau = Launcher(server.addr, server.files.cert.read_bytes())
    pw = lau.attest(f"{ns}/s1/app").json()["env"]["API_PASSWORD"]
    lau.close()
    server.stop(signal.SIGKILL)  # no shutdown hook runs
    again = cas_factory(files=server.files, db_url=server.db_url)
    with again.client(tmp_path / "id") as c:
        for name, h in acked.items():
            assert c.read_session(ns, name)["hash"] == h
    lau = Launcher(again.addr, again.files.cert.read_bytes())
    assert lau.attest(f"{ns}/s1/app").json()["env"]["API_PASSWORD"] == pw
    lau.close()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "veil",
            "cas",
            "audit",
            "verify",
            "--state-dir",
            str(again.files.root),
            "--db",
            again.db_url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "intact" in verify.stdout


@pytest.mark.slow
def test_two_cas_processes_share_postgresql(
    cas_factory: Callable[..., CasServer], pg_url: str, tmp_path: Path
) -> None:
    first = cas_factory(db_url=pg_url)
    second = cas_factory(files=first.files, db_url=pg_url)
    ns = "pg-" + uuid.uuid4().hex[:8]
    with first.client(tmp_path / "id") as a, second.client(tmp_path / "id") as b:
        out = a.create_session(ns, session())
        assert b.read_session(ns, "hello")["hash"] == out["hash"]
        out2 = b.update_session(ns, session(predecessor=out["hash"]))
        with pytest.raises(UserError, match="409"):
            a.update_session(ns, session(predecessor=out["hash"]))
        assert a.read_session(ns, "hello")["hash"] == out2["hash"]
    la = Launcher(first.addr, first.files.cert.read_bytes())
    lb = Launcher(second.addr, second.files.cert.read_bytes())
    cid = f"{ns}/hello/app"
    nonce = la.nonce(cid).json()["nonce"]
    ev = la.evidence(cid, "1" * 64, nonce)
    ok = lb.provision(ev)  # a nonce of one replica is good at the other...
    assert ok.status_code == 200, ok.text
    replay = la.provision(ev)  # ...and only once across both
    assert replay.status_code == 403 and "already used" in replay.text
    assert la.attest(cid).json()["env"] == ok.json()["env"]
    la.close()
    lb.close()


@pytest.mark.slow
def test_concurrent_attestations_on_two_postgresql_replicas_keep_one_chain(
    cas_factory: Callable[..., CasServer], pg_url: str, tmp_path: Path
) -> None:
    # a database of its own: the audit chain of the shared one holds other CAS keys' entries
    name = "chain_" + uuid.uuid4().hex[:8]
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    pg_url = str(make_url(pg_url).set(database=name).render_as_string(hide_password=False))
    first = cas_factory(db_url=pg_url, workers=2)
    second = cas_factory(files=first.files, db_url=pg_url)
    ns = "pgc-" + uuid.uuid4().hex[:8]
    with first.client(tmp_path / "id") as a:
        a.create_session(ns, session())
    cid = f"{ns}/hello/app"
    la = Launcher(first.addr, first.files.cert.read_bytes())
    lb = Launcher(second.addr, second.files.cert.read_bytes())
    evidence = [la.evidence(cid, "1" * 64, la.nonce(cid).json()["nonce"]) for _ in range(30)]
    # every evidence sent to both replicas at once: exactly one of the two wins
    work = [(lau, ev) for ev in evidence for lau in (la, lb)]
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda w: w[0].provision(w[1]).status_code, work))
    la.close()
    lb.close()
    assert codes.count(200) == 30 and codes.count(403) == 30, codes
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "veil",
            "cas",
            "audit",
            "verify",
            "--state-dir",
            str(first.files.root),
            "--db",
            pg_url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
