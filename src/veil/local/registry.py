"""A registry of this machine's own for `veil up`: when the images of a mesh live in a loopback
registry (127.0.0.1:PORT, localhost:PORT) that does not answer, Debian's `docker-registry` is
started there, its storage under `$VEIL_HOME/local/registry/PORT/`, its PID beside it — so the
images `veil apply` pushed to it before are there again. `veil down` stops it by that PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from veil.errors import OperationalError
from veil.image.tools import is_loopback
from veil.paths import home_dir

__all__ = ["ensure_registries", "registry_dir", "stop_registries"]

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
health:
  storagedriver:
    enabled: false
"""


def registry_dir() -> Path:
    return home_dir() / "local" / "registry"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_registries(images: list[str]) -> list[str]:
    """Start the loopback registries of `images` that do not answer; returns their addresses."""
    started = []
    for addr in sorted({i.split("/", 1)[0] for i in images if is_loopback(i)}):
        host, _, port_text = addr.rpartition(":")
        if not port_text.isdigit():
            continue
        host, port = ("127.0.0.1" if host == "localhost" else host.strip("[]")), int(port_text)
        if _answers(host, port):
            continue
        if shutil.which("docker-registry") is None:
            raise OperationalError(
                f"the registry {addr} of the mesh's images does not answer, and "
                "`docker-registry` is not installed to start one",
                hint="install the Debian package `docker-registry` (scripts/setup.sh does)")
        root = registry_dir() / str(port)
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(_CONFIG.format(root=root / "data", addr=f"{host}:{port}"))
        log = (root / "registry.log").open("ab")
        proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        (root / "pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 15
        while not _answers(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_registries()
                raise OperationalError(f"the local registry {addr} did not start",
                                       hint=f"see {root / 'registry.log'}")
            time.sleep(0.05)
        started.append(addr)
    return started


def stop_registries() -> list[str]:
    """Stop every registry `ensure_registries` started (by PID); their storage stays."""
    stopped = []
    root = registry_dir()
    for pid_file in sorted(root.glob("*/pid")) if root.exists() else []:
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            stopped.append(pid_file.parent.name)
        pid_file.unlink(missing_ok=True)
    return stopped
