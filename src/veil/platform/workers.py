"""The build workers of one platform process, and the housekeeping beside them.

`--workers N` threads each claim the oldest queued build from the job store and run it; one more
thread, every half second, flushes the running builds' logs, renews their leases (heartbeat),
stops those asked to cancel or past their timeout, marks failed the builds whose worker stopped
(in this process's past life or in another process), and removes the work folders of builds
that finished longer ago than the retention time.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from veil.errors import VeilError
from veil.platform.build import BuildSettings, Outcome, remove_local, run_build
from veil.platform.job import Aborted, BuildFailed, Job, LogSink
from veil.platform.request import SECRET_PREFIX, ContainerBuildRequest
from veil.platform.sealing import Sealer
from veil.platform.store import BuildRow, JobStore

__all__ = ["PoolSettings", "WorkerPool"]

log = logging.getLogger("veil.platform")


@dataclass(frozen=True)
class PoolSettings:
    workers: int = 2
    work_dir: Path = Path("work")
    build_timeout: float = 3600.0
    retention: float = 86400.0  # seconds a finished build's work folder is kept
    lease: float = 30.0  # a running build without heartbeat this long is failed
    heartbeat: float = 2.0
    poll: float = 1.0  # how often an idle worker looks at the queue
    build: BuildSettings = field(default_factory=BuildSettings)


class WorkerPool:
    def __init__(self, store: JobStore, sealer: Sealer, settings: PoolSettings) -> None:
        self.store = store
        self.sealer = sealer
        self.settings = settings
        self.host = socket.gethostname()
        self.name = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._untag: list[tuple[float, list[str]]] = []  # (when finished, local tags)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._housekeep(force=True)  # builds of a killed earlier life fail before new ones run
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._work, name=f"build-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._maintain, name="build-housekeeping", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.abort("the platform process running it stopped")
        for t in self._threads:
            t.join(timeout)
        self._untag_idle(time.monotonic() + self.UNTAG_GRACE)  # stopping: nothing runs or pulls

    def wake(self) -> None:
        self._wake.set()

    # -- workers ---------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                row = self.store.claim(self.name)
            except SQLAlchemyError as err:
                log.warning("cannot claim a build: %s", err)
                row = None
            if row is None:
                self._wake.wait(self.settings.poll)
                self._wake.clear()
                continue
            self._run(row)

    def _run(self, row: BuildRow) -> None:
        sink = LogSink(lambda seq, text: self.store.append_log(row.id, seq, text))
        try:
            secrets = self.sealer.unseal(row.sealed)
        except VeilError as err:
            self.store.finish(row.id, self.name, "failed", error=err.message)
            return
        job = Job(row.id, sink, secrets, self.settings.build_timeout)
        with self._lock:
            self._jobs[row.id] = job
        status, error, outcome = "failed", None, Outcome()
        work = self.settings.work_dir / row.id
        try:
            args = {k: v for k, v in row.request["build_args"].items()
                    if not k.startswith(SECRET_PREFIX)}
            args |= {SECRET_PREFIX + k: v for k, v in secrets.items()}
            req = ContainerBuildRequest.model_validate({**row.request, "build_args": args})
            job.log(f"build {row.id} on {self.name}")
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            outcome = run_build(job, req, secrets, work, self.settings.build)
            status = "succeeded"
        except Aborted as err:
            status, error = ("cancelled" if err.cancelled else "failed"), err.reason
        except BuildFailed as err:
            error = err.reason
            if isinstance(err.outcome, Outcome):
                outcome = err.outcome
        except (VeilError, ValidationError) as err:
            error = err.render() if isinstance(err, VeilError) else str(err)
        except Exception as err:  # a bug must fail one build, not the worker
            log.error("build %s: %s", row.id, traceback.format_exc())
            error = f"internal error of the platform ({type(err).__name__}); see its log"
        finally:
            with self._lock:
                self._jobs.pop(row.id, None)
        error = job.mask(error) if error else None
        if error:
            job.log(f"==> {status}: {error}")
        else:
            job.log(f"==> succeeded: {', '.join(outcome.images)}")
        try:
            sink.flush()
            self.store.finish(row.id, self.name, status, error=error, digests=outcome.digests,
                              images=outcome.images)
        except SQLAlchemyError as err:
            log.error("build %s: cannot record its outcome: %s", row.id, err)
        self._untag_later(job.local_tags)
        if self.settings.retention <= 0:
            shutil.rmtree(work, ignore_errors=True)

    # -- housekeeping ----------------------------------------------------------------------
    def _maintain(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._housekeep()
            except SQLAlchemyError as err:
                log.warning("housekeeping: %s", err)

    _last_beat = 0.0
    _last_reap = 0.0
    _last_clean = 0.0

    def _housekeep(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            jobs = dict(self._jobs)
        for job in jobs.values():
            job.sink.flush()
            if now > job.deadline:
                job.abort(f"timed out after {job.timeout:.0f} s (the platform's build timeout)")
        if force or now - self._last_beat >= self.settings.heartbeat:
            self._last_beat = now
            for build_id in self.store.heartbeat(self.name, jobs):
                jobs[build_id].abort("cancelled on request", cancelled=True)
        if force or now - self._last_reap >= min(5.0, self.settings.lease / 2):
            self._last_reap = now
            for build_id in self.store.reap(self.settings.lease, self._dead_workers()):
                log.warning("build %s: its worker stopped; marked failed", build_id)
        self._untag_idle(now)
        if force or now - self._last_clean >= max(1.0, min(60.0, self.settings.retention / 2)):
            self._last_clean = now
            self._clean_work_dirs()

    # Untagging a finished build's image can delete layers that a running build's cache lookup
    # or a pull of the same image is using this very moment (buildah: "layer not known"). So
    # finished builds' tags are removed only while no build of this pool runs (the pool's lock
    # held, so none starts meanwhile) and after a grace period for whoever pulls the result.
    UNTAG_GRACE = 30.0

    def _untag_later(self, refs: list[str]) -> None:
        if refs:
            with self._lock:
                self._untag.append((time.monotonic(), list(refs)))

    def _untag_idle(self, now: float) -> None:
        with self._lock:
            if self._jobs or not self._untag:
                return
            due = [refs for t, refs in self._untag if now - t >= self.UNTAG_GRACE]
            self._untag = [(t, refs) for t, refs in self._untag if now - t < self.UNTAG_GRACE]
            for refs in due:
                remove_local(refs)

    def _dead_workers(self) -> list[str]:
        """Workers of this host whose process is gone (killed, crashed, restarted)."""
        dead = []
        for worker in self.store.running_workers():
            host, _, rest = worker.partition(":")
            pid, _, _tag = rest.partition(":")
            if host != self.host or worker == self.name or not pid.isdigit():
                continue
            if int(pid) == os.getpid():
                dead.append(worker)  # this pid's earlier life
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                dead.append(worker)
            except PermissionError:
                pass
        return dead

    def _clean_work_dirs(self) -> None:
        root = self.settings.work_dir
        if not root.is_dir():
            return
        for build_id in self.store.finished_before(time.time() - self.settings.retention):
            path = root / build_id
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
