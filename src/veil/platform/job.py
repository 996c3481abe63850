"""One running build as the steps see it: a log, the tools it runs, and a way to stop it.

Every tool (git, pip, buildah) runs in its own process group, its output streamed line by line
into the build's log with every secret value masked. `abort(reason)` (a cancel request, the
timeout, the platform stopping) kills the running tool's whole group; the step then raises
`Aborted` instead of reporting the tool's failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["MAX_LOG", "Aborted", "BuildFailed", "Job", "LogSink"]

MAX_LOG = 16 << 20  # characters of log kept per build: a build cannot fill the job store


class BuildFailed(Exception):
    """The build cannot succeed; the message is the reason shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome: object | None = None


class Aborted(Exception):
    def __init__(self, reason: str, *, cancelled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cancelled = cancelled


class LogSink:
    """Buffers log text and hands it on in chunks (one job-store row each)."""

    def __init__(self, write: Callable[[int, str], None], every: float = 0.25,
                 limit: int = MAX_LOG) -> None:
        self._write = write
        self._room = limit
        self._every = every
        self._buf: list[str] = []
        self._seq = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        line = line if line.endswith("\n") else line + "\n"
        with self._lock:
            if self._room <= 0:
                return
            self._room -= len(line)
            if self._room <= 0:
                line = "[the log is longer than the platform keeps; the rest is dropped]\n"
            self._buf.append(line)
            due = time.monotonic() - self._last >= self._every or len(self._buf) >= 200
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._buf:
                return
            text, self._buf = "".join(self._buf), []
            seq, self._seq = self._seq, self._seq + 1
            self._last = time.monotonic()
            self._write(seq, text)


class Job:
    def __init__(self, build_id: str, sink: LogSink, secrets: Mapping[str, str],
                 timeout: float) -> None:
        self.build_id = build_id
        self.sink = sink
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        # longest first, so that a secret holding another is masked whole
        self._secrets = sorted(((v, k) for k, v in secrets.items() if v), key=lambda s: -len(s[0]))
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.abort_reason: str | None = None
        self.cancelled = False
        self.local_tags: list[str] = []  # what the build tagged in local storage

    def mask(self, text: str) -> str:
        for value, name in self._secrets:
            text = text.replace(value, f"[secret {name}]")
        return text

    def log(self, line: str) -> None:
        self.sink.add(self.mask(line.rstrip("\n")))

    def step(self, what: str) -> None:
        self.check()
        self.log(f"==> {what}")

    def abort(self, reason: str, *, cancelled: bool = False) -> None:
        with self._lock:
            if self.abort_reason is None:
                self.abort_reason = reason
                self.cancelled = cancelled
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def check(self) -> None:
        if self.abort_reason is not None:
            raise Aborted(self.abort_reason, cancelled=self.cancelled)

    def run(self, args: Sequence[str], *, what: str, cwd: Path | None = None,
            env: Mapping[str, str] | None = None, hint: str | None = None,
            quiet: bool = False) -> list[str]:
        """Run a tool, its output into the log; BuildFailed(what + its last lines) on failure."""
        self.check()
        try:
            proc = subprocess.Popen(
                list(args), cwd=cwd, env=dict(env) if env is not None else None,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, errors="replace", start_new_session=True,
            )
        except OSError as err:
            raise BuildFailed(f"{what}: cannot run {args[0]}: {err.strerror}") from None
        with self._lock:
            self._proc = proc
        if self.abort_reason is not None:
            self.abort(self.abort_reason)
        last: deque[str] = deque(maxlen=15)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            last.append(line)
            if len(lines) < 10_000:
                lines.append(line)
            if not quiet:
                self.log(line)
        rc = proc.wait()
        with self._lock:
            self._proc = None
        self.check()
        if rc != 0:
            shown = "\n".join("  " + self.mask(ln) for ln in last) or "  (no output)"
            reason = f"{what}:\n{shown}"
            raise BuildFailed(reason + (f"\n  hint: {hint}" if hint else ""))
        return lines

    def ok(self, args: Sequence[str], *, cwd: Path | None = None,
           env: Mapping[str, str] | None = None) -> bool:
        """Run a quick check; True when it exits 0 (its output is not logged)."""
        self.check()
        proc = subprocess.run(list(args), cwd=cwd, env=dict(env) if env is not None else None,
                              capture_output=True, check=False, stdin=subprocess.DEVNULL)
        return proc.returncode == 0
