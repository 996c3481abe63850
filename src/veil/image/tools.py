"""Running buildah, skopeo and podman: the environment they get and how their failures read.

Unless the user already points `CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF` or
`CONTAINERS_REGISTRIES_CONF` somewhere, Veil writes its own settings (overlay storage, runc,
host network, loopback registries over plain HTTP) under `$VEIL_HOME/containers/` and uses those.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.paths import home_dir

__all__ = [
    "CONTAINERS_CONF",
    "REGISTRIES_CONF",
    "STORAGE_CONF",
    "container_env",
    "is_loopback",
    "require",
    "run_tool",
    "tls_flag",
    "write_container_confs",
]

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "host"

[engine]
# conmon runs `podman container cleanup` when the container exits; without these it reads the
# system's settings, fails, and every `podman run` waits out a 20 s timeout.
conmon_env_vars = [{conmon_env}]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""

# overlay: a one-file rebuild takes ~0.35 s and a container starts in ~0.13 s; vfs copies the
# whole rootfs at every step (10-25x slower) and is only a fallback.
STORAGE_CONF = """\
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
"""

REGISTRIES_CONF = """\
unqualified-search-registries = []

[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "localhost:5000"
insecure = true
"""

_FILES = {
    "CONTAINERS_CONF": ("containers.conf", CONTAINERS_CONF),
    "CONTAINERS_STORAGE_CONF": ("storage.conf", STORAGE_CONF),
    "CONTAINERS_REGISTRIES_CONF": ("registries.conf", REGISTRIES_CONF),
}


def write_container_confs(conf_dir: Path) -> dict[str, str]:
    """Write Veil's three settings files into `conf_dir`; returns the variables naming them."""
    paths = {var: conf_dir / name for var, (name, _) in _FILES.items()}
    conmon_env = ", ".join(
        f'"{k}={v}"' for k, v in [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                           "/sbin:/bin"), *sorted(paths.items())]
    )
    for var, (_, text) in _FILES.items():
        text = text.replace("{conmon_env}", conmon_env)
        path = paths[var]
        if not path.exists() or path.read_text() != text:
            atomic_write_text(path, text)
    return {var: str(p) for var, p in paths.items()}


def container_env() -> dict[str, str]:
    """The environment for buildah/podman/skopeo: the user's, plus Veil's settings files."""
    env = dict(os.environ)
    if all(env.get(var) for var in _FILES):
        return env
    for var, path in write_container_confs(home_dir() / "containers").items():
        env.setdefault(var, path)
        if not env[var]:
            env[var] = path
    return env


def is_loopback(ref: str) -> bool:
    host = ref.split("/", 1)[0].rsplit(":", 1)[0] if "/" in ref else ""
    return host in ("127.0.0.1", "localhost", "[::1]")


def tls_flag(ref: str) -> list[str]:
    """Loopback registries (the local one, the tests') speak plain HTTP."""
    return ["--tls-verify=false"] if is_loopback(ref) else []


def require(tool: str, package: str | None = None) -> str:
    path = shutil.which(tool)
    if path is None:
        raise OperationalError(
            f"`{tool}` is not installed",
            hint=f"install the Debian package `{package or tool}` (scripts/setup.sh does)",
        )
    return path


def run_tool(
    args: Sequence[str],
    *,
    what: str,
    hint: str | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; on failure raise OperationalError with `what` and the tool's last lines."""
    require(args[0])
    try:
        proc = subprocess.run(
            list(args), cwd=cwd, env=container_env(), input=stdin, capture_output=True,
            check=False,
        )
    except OSError as err:
        raise OperationalError(f"{what}: cannot run {args[0]}: {err}", hint=hint) from None
    if proc.returncode != 0:
        raise OperationalError(f"{what}:\n{tail(proc.stderr or proc.stdout)}", hint=hint)
    return proc


def tail(output: bytes, lines: int = 12) -> str:
    text = output.decode("utf-8", "replace").strip().splitlines()
    return "\n".join("  " + ln for ln in text[-lines:]) or "  (no output)"
