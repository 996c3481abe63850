"""End-to-end fixtures: the registry and base image of tests/image, plus a real CAS.

CAS is started with the public CLI (`veil cas init`, `veil cas serve`) on a free loopback port
and stopped by PID.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.image.support import base_image, registry

__all__ = ["Cas", "base_image", "cas", "registry"]


@dataclass(frozen=True)
class Cas:
    addr: str
    key: str
    state_dir: Path


def _veil(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veil", *args], capture_output=True, text=True,
                          env=env, check=False)


@pytest.fixture(scope="session")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cas]:
    tmp = tmp_path_factory.mktemp("cas")
    env = dict(os.environ, VEIL_HOME=str(tmp / "home"), VEIL_CONFIG_DIR=str(tmp / "config"))
    state_dir = tmp / "state"
    init = _veil("cas", "init", "--state-dir", str(state_dir), "--host", "127.0.0.1", env=env)
    assert init.returncode == 0, init.stderr
    key = init.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (tmp / "cas.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "veil", "cas", "serve", "--state-dir", str(state_dir),
         "--listen", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s, \
                    ctx.wrap_socket(s):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((tmp / "cas.log").read_text()[-1000:]) from None
            time.sleep(0.1)
    try:
        yield Cas(f"127.0.0.1:{port}", key, state_dir)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
