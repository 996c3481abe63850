"""Group commit of attestation writes: replays refused inside one batch, the audit chain intact,
a failing batch reported to every request in it, and expired nonces swept."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, func, insert, select, text

from tests.cas.helpers import M1, session
from veil.cas import attest, audit, sessions
from veil.cas.core import Cas, Refusal
from veil.cas.groupcommit import GroupCommit, Job
from veil.cas.state import init_state, load_keyring
from veil.cas.store import FileGate, make_engine, make_reader, used_nonces, write_gate
from veil.cas.verifiers import Evidence
from veil.session.load import session_from_data

CID = "ns/hello/app"


@pytest.fixture
def cas(tmp_path: Path) -> Iterator[Cas]:
    files = init_state(tmp_path / "state", ["127.0.0.1"])
    url = files.default_db_url
    engine = make_engine(url)
    c = Cas(engine, load_keyring(files), make_reader(url, engine), write_gate(url))
    sessions.create(c, "ns", session_from_data(session(), file="test"), "creator")
    yield c
    engine.dispose()


def _evidence(nonce: str) -> Evidence:
    report = base64.b64encode(json.dumps({"measurement": M1, "nonce": nonce}).encode()).decode()
    return Evidence(CID, M1, nonce, "simulation", report)


def _events(cas: Cas, event: str) -> int:
    with cas.engine.connect() as conn:
        rows = conn.execute(text("SELECT entry FROM audit")).scalars().all()
    return sum(1 for e in rows if json.loads(e)["event"] == event)


def test_concurrent_attestations_with_replays(cas: Cas) -> None:
    nonces = [attest.issue_nonce(cas, CID)["nonce"] for _ in range(40)]
    # every nonce sent three times at once: exactly one use each
    work = [n for n in nonces for _ in range(3)]

    def one(nonce: str) -> str:
        try:
            attest.provision(cas, _evidence(nonce))
            return "ok"
        except Refusal as r:
            assert "already used" in r.reason, r.reason
            return "replay"

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, work))
    assert results.count("ok") == 40 and results.count("replay") == 80
    assert _events(cas, "provision") == 40 and _events(cas, "denied") == 80
    report = audit.verify(cas.engine, cas.integrity)
    assert report.ok, report.problems
    assert report.entries == 1 + 40 + 80  # create, provisions, refusals


def test_failed_batch_fails_every_request_in_it_and_the_next_one_works(cas: Cas) -> None:
    gc = GroupCommit(cas.write)
    gate, running = threading.Event(), threading.Event()

    def blocker(conn: Connection) -> str:
        running.set()
        gate.wait(5)  # holds the writer so the next jobs land in one batch
        return "first"

    def write(conn: Connection) -> int:
        conn.execute(insert(used_nonces).values(nonce="x" * 44, expires=1))
        return 1

    def broken(conn: Connection) -> int:
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))
        return 2

    first = gc.submit(blocker)
    assert running.wait(5)
    batch = [gc.submit(write), gc.submit(broken)]
    gate.set()
    assert first.result(5) == "first"
    for fut in batch:
        with pytest.raises(Exception, match="no_such_table"):
            fut.result(5)
    with cas.engine.connect() as conn:  # the good job of the failed batch was rolled back
        assert conn.execute(select(func.count()).select_from(used_nonces)).scalar() == 0
    assert gc.run(write) == 1


def test_expired_nonces_are_swept(cas: Cas, monkeypatch: pytest.MonkeyPatch) -> None:
    with cas.write() as conn:
        conn.execute(insert(used_nonces).values(nonce="old" * 11, expires=int(time.time()) - 60))
    monkeypatch.setattr(attest, "_SWEEP_EVERY", 1)
    attest.provision(cas, _evidence(attest.issue_nonce(cas, CID)["nonce"]))
    cas.committer.run(lambda conn: None)  # the sweep went into an earlier batch
    with cas.engine.connect() as conn:
        left = conn.execute(select(used_nonces.c.nonce)).scalars().all()
    assert left and "old" * 11 not in left


def test_event_loop_batches_wait_for_a_busy_lock_and_share_one_commit(cas: Cas) -> None:
    assert isinstance(cas.gate, FileGate)
    gc = GroupCommit(cas.engine.begin, cas.gate)
    commits: list[int] = []
    event.listen(cas.engine, "commit", lambda conn: commits.append(1))

    def job(n: int) -> Job:
        def run(conn: Connection) -> int:
            conn.execute(insert(used_nonces).values(nonce=f"n{n:043d}", expires=1))
            return n

        return run

    def broken(conn: Connection) -> int:
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))
        return -1

    async def main() -> tuple[list[int], list[BaseException | int]]:
        # another holder has the write lock: the batch waits for it in a thread, and all
        # jobs queued meanwhile go into one transaction
        assert cas.gate is not None and cas.gate.acquire()
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, cas.gate.release)
        ok = await asyncio.gather(*(gc.run_async(job(n)) for n in range(10)))
        failed = await asyncio.gather(
            gc.run_async(job(100)), gc.run_async(broken), return_exceptions=True
        )
        return list(ok), failed

    ok, failed = asyncio.run(main())
    assert ok == list(range(10))
    assert len(commits) == 1  # one transaction for the ten; the failed batch did not commit
    assert all(isinstance(f, Exception) and "no_such_table" in str(f) for f in failed), failed
    with cas.engine.connect() as conn:  # job 100 was rolled back with its batch
        stored = conn.execute(select(used_nonces.c.nonce)).scalars().all()
    assert sorted(stored) == [f"n{n:043d}" for n in range(10)]


def test_event_loop_batches_for_a_database_server_run_in_a_thread(cas: Cas) -> None:
    # no FileGate (as with PostgreSQL): the batch must not run on the event loop's thread
    gc = GroupCommit(cas.write)
    threads: list[int] = []

    def job(conn: Connection) -> int:
        threads.append(threading.get_ident())
        return 7

    async def main() -> list[int]:
        return list(await asyncio.gather(gc.run_async(job), gc.run_async(job)))

    assert asyncio.run(main()) == [7, 7]
    assert threads and threading.get_ident() not in threads
