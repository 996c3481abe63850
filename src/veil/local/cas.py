"""A CAS of this machine's own for `veil up`, when the mesh names none that answers.

Its keys and database live under `$VEIL_HOME/local/cas/` and outlive `veil down` (the secrets
CAS generated stay the same across runs) unless `veil down --volumes`. It listens on each mesh
network's gateway address: the one address both this host (to upload sessions) and that mesh's
containers (to attest) reach, and no other network does (not on 0.0.0.0). Started detached; its
PID is kept beside its state and `veil down` stops it by that PID.
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


def _bindable(host: str, port: int) -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, port))
    except OSError:
        return False
    return True


def _port_for(hosts: list[str], wanted: int) -> int:
    """`wanted` when it is free on every host, else a port free on all of them."""
    if wanted and all(_bindable(h, wanted) for h in hosts):
        return wanted
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        if all(_bindable(h, port) for h in hosts[1:]):
            return port
    raise OperationalError("no port is free on every address of the local CAS: "
                           + ", ".join(hosts))


def _recorded(addr_file: Path) -> list[str]:
    if not addr_file.exists():
        return []
    return [a.strip() for a in addr_file.read_text().splitlines() if a.strip()]


def ensure_local_cas(host: str) -> LocalCas:
    """The local CAS, listening on `host` (among the addresses it already serves).

    One CAS serves every mesh `veil up` runs from this Veil home: each mesh network's gateway is
    one of its addresses. A mesh on a new network restarts it on the old addresses plus the new
    one, on the same port, so the containers of the meshes already running keep their CAS address
    (a launcher that finds it restarting retries the connection)."""
    root = cas_dir()
    pid_file, addr_file, key_file = root / "pid", root / "addr", root / "public-key"
    addrs = _recorded(addr_file)
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    running = bool(pid) and _alive(pid)
    mine = next((a for a in addrs if a.rpartition(":")[0] == host), None)
    if running and mine is not None and key_file.exists() and _answers(mine):
        # running already: its public key as recorded at its start (no CAS code loaded, a
        # warm `veil up` stays short)
        return LocalCas(mine, key_file.read_text().strip(), started=False, pid=pid)
    from veil.cas.state import CasFiles, init_state  # cryptography, SQLAlchemy: when used

    files = CasFiles(root)
    if not files.key.exists():
        files = init_state(root, [host, "127.0.0.1", "localhost"])
    key = files.public_key_b64()
    atomic_write_text(key_file, key + "\n")
    if running:
        stop_local_cas()
    # the addresses of networks that are gone can no longer be bound: they are left out
    hosts = [h for h in dict.fromkeys(a.rpartition(":")[0] for a in addrs)
             if h != host and _bindable(h, 0)] + [host]
    port = _port_for(hosts, int(addrs[0].rpartition(":")[2]) if addrs else 0)
    listen = [f"{h}:{port}" for h in hosts]
    log = (root / "cas.log").open("ab")
    argv = [sys.executable, "-m", "veil", "cas", "serve", "--state-dir", str(root)]
    for a in listen:
        argv += ["--listen", a]
    # its own state only: a VEIL_CAS_DB/VEIL_CAS_DIR in the user's environment names another CAS
    env = {k: v for k, v in os.environ.items() if k not in ("VEIL_CAS_DB", "VEIL_CAS_DIR")}
    proc = subprocess.Popen(  # a Ctrl-C in the terminal is for `veil up`, not for CAS
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    atomic_write_text(addr_file, "".join(a + "\n" for a in listen))
    addr = f"{host}:{port}"
    deadline = time.monotonic() + 30
    while not _answers(addr, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_local_cas()
            text = (root / "cas.log").read_text(errors="replace").strip().splitlines()[-8:]
            raise OperationalError("the local CAS did not start:\n  " + "\n  ".join(text),
                                   hint=f"its state and log are in {root}")
        time.sleep(0.05)
    # restarted for another mesh: a Ctrl-C of this `veil up` must not stop the others' CAS
    return LocalCas(addr, key, started=not running, pid=proc.pid)


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
