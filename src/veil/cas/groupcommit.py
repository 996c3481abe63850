"""Group commit: the write jobs of many requests run in one transaction.

Every attestation writes (its nonce and its audit entry). One transaction each means one
write-lock hand-over, BEGIN and COMMIT per attestation, and waiting writers queued on a lock that
is not fair, which made the latency tail long. Here a request queues its job and waits; the
batch takes every job that is waiting (up to `max_batch`), runs them in order in one
transaction and commits, and only then answers each request — an answer still means the write
is committed. A job must not leave partial writes behind when it refuses: it records its
refusal (audit) in the same transaction and returns it instead of raising. An exception that
escapes a job (a database error) rolls the whole batch back and is raised in every request of it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection

from veil.cas.store import FileGate

__all__ = ["GroupCommit", "Job"]

Job = Callable[[Connection], Any]


class GroupCommit:
    """`run` (any thread) hands the job to a writer thread; `run_async` (event loop) batches
    on the loop. With SQLite the batch runs on the loop itself and only waiting for a busy
    write lock happens in a thread: no second thread competes for the GIL in the middle of a
    batch (each SQLite call releases and re-takes it), which kept the latency tail long. With a
    database server (no FileGate) the batch runs in a thread."""

    def __init__(
        self,
        begin: Callable[[], AbstractContextManager[Connection]],
        gate: Callable[[], AbstractContextManager[None]] | None = None,
        max_batch: int = 64,
        first: Callable[[Connection], object] | None = None,
    ) -> None:
        self._begin = begin
        self._gate = gate
        # runs at the start of every batch transaction: CAS locks the audit head there, so
        # batches of several replicas queue on one lock before any of them inserts a nonce
        # (otherwise two batches can each wait for a nonce the other inserted: a deadlock)
        self._first = first
        self._max = max_batch
        self._queue: queue.SimpleQueue[tuple[Job, Future[Any]]] = queue.SimpleQueue()
        self._pid = 0
        self._start = threading.Lock()
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._gate() if self._gate else nullcontext(), self._begin() as conn:
            yield conn

    def _ensure_writer(self) -> None:
        # started lazily, and again in a forked child (threads do not survive fork)
        if self._pid == os.getpid():
            return
        with self._start:
            if self._pid != os.getpid():
                threading.Thread(target=self._loop, name="veil-cas-writer", daemon=True).start()
                self._pid = os.getpid()

    def submit(self, job: Job) -> Future[Any]:
        self._ensure_writer()
        fut: Future[Any] = Future()
        self._queue.put((job, fut))
        return fut

    def run(self, job: Job) -> Any:
        """Run `job` in the next batch and wait for the commit."""
        return self.submit(job).result()

    def _batches(self) -> Iterator[list[tuple[Job, Future[Any]]]]:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            yield batch

    def _loop(self) -> None:
        for batch in self._batches():
            try:
                with self._transaction() as conn:
                    if self._first is not None:
                        self._first(conn)
                    results = [job(conn) for job, _ in batch]
            except BaseException as err:
                for _, fut in batch:
                    fut.set_exception(err)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                fut.set_result(result)

    async def run_async(self, job: Job) -> Any:
        """Run `job` in the event loop's next batch and wait for the commit."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((job, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await fut

    def _execute(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> list[Any]:
        with self._begin() as conn:
            if self._first is not None:
                self._first(conn)
            return [job(conn) for job, _ in batch]

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            gate = self._gate if isinstance(self._gate, FileGate) else None
            # a free lock is taken right here; only waiting for it happens in a thread
            if gate is not None and not gate.acquire(blocking=False):
                await loop.run_in_executor(None, gate.acquire)
            # cut the batch only now: requests that came while we waited for the lock join it
            batch = self._pending[: self._max]
            del self._pending[: self._max]
            try:
                if gate is not None:
                    results = self._execute(batch)
                else:
                    # a database server: each statement is a round trip and the commit waits
                    # for its disk, too long to hold the event loop
                    results = await loop.run_in_executor(None, self._execute, batch)
            except BaseException as err:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            finally:
                if gate is not None:
                    gate.release()
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():  # a request whose client went away is cancelled
                    fut.set_result(result)
