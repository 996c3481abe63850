"""A CAS of this machine's own for `veil up`, when the mesh names none that answers.

Its keys and database live under `$VEIL_HOME/local/cas/` and outlive `veil down` (the secrets
CAS generated stay the same across runs) unless `veil down --volumes`. It listens on the mesh
network's gateway address: the one address both this host (to upload sessions) and the
containers (to attest) reach, and no other network does. Started detached; its PID is kept
beside its state and `veil down` stops it by that PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.paths import home_dir

__all__ = ["LocalCas", "cas_dir", "ensure_local_cas", "stop_local_cas"]


@dataclass(frozen=True)
class LocalCas:
    addr: str  # HOST:PORT, HOST the mesh network's gateway
    key: str  # the public key to pin (base64 DER)
    started: bool  # started by this call (a Ctrl-C during `veil up` stops it again)
    pid: int


def cas_dir() -> Path:
    return home_dir() / "local" / "cas"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _answers(addr: str, timeout: float = 1.0) -> bool:
    host, _, port = addr.rpartition(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s, \
                ctx.wrap_socket(s):
            return True
    except OSError:
        return False


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_local_cas(host: str) -> LocalCas:
    """The local CAS listening on `host` (started if it is not running there)."""
    root = cas_dir()
    pid_file, addr_file, key_file = root / "pid", root / "addr", root / "public-key"
    if pid_file.exists() and addr_file.exists() and key_file.exists():
        # running already: its public key as recorded at its start (no CAS code loaded, a
        # warm `veil up` stays short)
        pid, addr = int(pid_file.read_text()), addr_file.read_text().strip()
        if _alive(pid) and addr.rpartition(":")[0] == host and _answers(addr):
            return LocalCas(addr, key_file.read_text().strip(), started=False, pid=pid)
    from veil.cas.state import CasFiles, init_state  # cryptography, SQLAlchemy: when used

    files = CasFiles(root)
    if not files.key.exists():
        files = init_state(root, [host, "127.0.0.1", "localhost"])
    key = files.public_key_b64()
    atomic_write_text(key_file, key + "\n")
    if pid_file.exists() and addr_file.exists():
        pid, addr = int(pid_file.read_text()), addr_file.read_text().strip()
        if _alive(pid) and addr.rpartition(":")[0] == host and _answers(addr):
            return LocalCas(addr, key, started=False, pid=pid)
        stop_local_cas()
    old = addr_file.read_text().strip() if addr_file.exists() else ""
    port = int(old.rpartition(":")[2]) if old else 0
    try:
        with socket.socket() as s:
            s.bind((host, port))
    except OSError:
        port = 0
    addr = f"{host}:{port or _free_port(host)}"
    log = (root / "cas.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "veil", "cas", "serve", "--state-dir", str(root),
         "--listen", addr], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)  # a Ctrl-C in the terminal is for `veil up`, not for CAS
    pid_file.write_text(f"{proc.pid}\n")
    addr_file.write_text(addr + "\n")
    deadline = time.monotonic() + 30
    while not _answers(addr, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_local_cas()
            text = (root / "cas.log").read_text(errors="replace").strip().splitlines()[-8:]
            raise OperationalError("the local CAS did not start:\n  " + "\n  ".join(text),
                                   hint=f"its state and log are in {root}")
        time.sleep(0.05)
    return LocalCas(addr, key, started=True, pid=proc.pid)


def stop_local_cas(*, forget: bool = False) -> bool:
    """Stop the local CAS (by its PID); `forget`: delete its keys and database too."""
    root = cas_dir()
    pid_file = root / "pid"
    stopped = False
    if pid_file.exists():
        with contextlib.suppress(ValueError):
            pid = int(pid_file.read_text())
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not _alive(pid):
                        break
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                    time.sleep(0.05)
                else:
                    os.kill(pid, signal.SIGKILL)
                stopped = True
        pid_file.unlink(missing_ok=True)
    if forget and root.exists():
        import shutil

        shutil.rmtree(root)
    return stopped
