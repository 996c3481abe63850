"""CAS test fixtures: a real `veil cas serve` over TLS on loopback, and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.postgres import postgres
from veil.cas.client import CasClient
from veil.cas.state import CasFiles, init_state

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CasServer:
    files: CasFiles
    addr: str
    db_url: str
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def key(self) -> str:
        return self.files.public_key_b64()

    def client(self, identity_dir: Path) -> CasClient:
        return CasClient(self.addr, self.key, identity_dir=identity_dir)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)


def _wait_ready(addr: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"CAS exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, int(port)), timeout=1) as s, ctx.wrap_socket(s):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"CAS did not start: {log.read_text()[-2000:]}")


def start_cas(
    files: CasFiles,
    db_url: str | None,
    log: Path,
    workers: int = 1,
    command: Callable[[str, str], list[str]] | None = None,
    rate_scale: float = 1000,
) -> CasServer:
    """`veil cas serve`, or `command(addr, db_url)` (a test's own server). The per-source rate
    limits are raised `rate_scale` times: the tests register hundreds of clients from one
    address (the rate-limit tests start theirs with 1)."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    url = db_url or files.default_db_url
    cmd = command(addr, url) if command else [
        sys.executable,
        "-m",
        "veil",
        "cas",
        "serve",
        "--state-dir",
        str(files.root),
        "--db",
        url,
        "--listen",
        addr,
        "--workers",
        str(workers),
        "--log-level",
        "info",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
            env={**os.environ, "VEIL_CAS_RATE_SCALE": str(rate_scale)},
        )
    _wait_ready(addr, proc, log)
    return CasServer(files, addr, url, log, proc)


@pytest.fixture(scope="session")
def cas_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., CasServer]]:
    """Start CAS servers on demand; every one is stopped by its PID at the end."""
    started: list[CasServer] = []

    def make(
        files: CasFiles | None = None,
        db_url: str | None = None,
        workers: int = 1,
        rate_scale: float = 1000,
    ) -> CasServer:
        if files is None:
            root = tmp_path_factory.mktemp("cas")
            files = init_state(root / "state", ["127.0.0.1", "localhost"])
        log = files.root.parent / f"cas-{len(started)}.log"
        server = start_cas(files, db_url, log, workers, rate_scale=rate_scale)
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def cas(cas_factory: Callable[..., CasServer]) -> CasServer:
    return cas_factory()


@pytest.fixture
def alice(cas: CasServer, tmp_path: Path) -> Iterator[CasClient]:
    with cas.client(tmp_path / "alice") as c:
        yield c


@pytest.fixture
def bob(cas: CasServer, tmp_path: Path) -> Iterator[CasClient]:
    with cas.client(tmp_path / "bob") as c:
        yield c


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    yield from postgres("veil_cas")
