"""Refusals before measuring: the ways a container could bring code around the measurement.

The measurement says what the image holds. The container around it can still add code at start
without touching the image: loader and interpreter variables (`LD_PRELOAD`, `PYTHONPATH`, ...),
a library preloaded into the launcher's own process, or a volume mounted over a measured path
(`/python`, `/usr/lib/python3*`, `/etc/ld.so.preload`). The launcher refuses each of these
before it asks CAS for anything, and says what it found. Paths are read under `root` (`/` in a
container), `/proc/self` included, so tests can hand in a prepared tree.

These checks run inside the process they inspect: a library that has already taken the process
over before the first line of Python runs can hide from them. They close the doors a container
*specification* opens (environment, mounts); they are no substitute for hardware that measures
what runs.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Iterable, Mapping

from veil.runtime.measure import RUNTIME_PATHS, is_excluded

__all__ = [
    "LOADER_VARIABLES",
    "Mount",
    "Refusal",
    "check_start",
    "foreign_mounts",
    "injected_variables",
    "parse_mountinfo",
    "preloaded_libraries",
    "unmeasured_mappings",
]

# Besides LD_* and PYTHON*: what makes glibc or OpenSSL (loaded by the launcher's `ssl`) load
# code or change the loader's behaviour.
LOADER_VARIABLES = (
    "GCONV_PATH", "GLIBC_TUNABLES", "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES",
)
# Set by the official python images' Containerfiles and read by no interpreter: allowed, and
# like every container variable not passed on to the program.
INERT_PYTHON_VARIABLES = (
    "PYTHON_GET_PIP_SHA256", "PYTHON_GET_PIP_URL", "PYTHON_PIP_VERSION",
    "PYTHON_SETUPTOOLS_VERSION", "PYTHON_SHA256", "PYTHON_VERSION",
)


class Refusal(Exception):
    """Why the launcher will not start; the message names the variable, library or mount."""


TYPE_CHECKING = False  # `typing` is not imported at start (it costs milliseconds of CPU)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Mount(NamedTuple):
        point: str
        fstype: str
        source: str
else:
    Mount = namedtuple("Mount", "point fstype source")


def injected_variables(names: Iterable[str]) -> list[str]:
    """The variables among `names` that change how the loader or the interpreter load code."""
    return sorted({
        n for n in names
        if n.startswith("LD_") or n in LOADER_VARIABLES
        or (n.startswith("PYTHON") and n not in INERT_PYTHON_VARIABLES)
    })


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        mounts.append(Mount(_unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2])))
    return mounts


def foreign_mounts(mounts: Iterable[Mount], host_paths: Iterable[str] = ()) -> list[Mount]:
    """Mounts other than the root filesystem outside the runtime paths and the plan's declared
    host paths: each one lies over, or adds to, what the measurement covers (a volume, a
    bind-mounted file or library)."""
    allowed = (*RUNTIME_PATHS, *host_paths)
    return [m for m in mounts if m.point != "/" and not is_excluded(m.point, allowed)]


def preloaded_libraries(text: str) -> list[str]:
    """The libraries `/etc/ld.so.preload` names (whitespace or colon separated, # comments)."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        names += [n for n in line.replace(":", " ").split() if n]
    return names


def unmeasured_mappings(maps: str, exclude: Iterable[str]) -> list[str]:
    """Files mapped into this process that the measurement does not cover: deleted or memfd
    files, files under excluded paths (`/tmp`, `/dev/shm`, injection targets...)."""
    skip = (*RUNTIME_PATHS, *exclude)
    found = set()
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[5].startswith("["):
            continue
        path = parts[5]
        if path.endswith(" (deleted)") or not path.startswith("/") or is_excluded(path, skip):
            found.add(path)
    return sorted(found)


def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/")), "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise Refusal(f"cannot read {path}: {err.strerror}; refusing to start unchecked") from None


def check_start(environ: Mapping[str, str], root: str, exclude: Iterable[str],
                host_paths: Iterable[str] = ()) -> None:
    """Raise Refusal naming everything found that would bypass the measurement. `exclude` and
    `host_paths` come from the image's plan."""
    problems = []
    initial = _read(root, "/proc/self/environ") or ""
    # the initial environment too: a preloaded library can remove itself from os.environ
    names = set(environ) | {kv.split("=", 1)[0] for kv in initial.split("\0") if "=" in kv}
    bad = injected_variables(names)
    if bad:
        problems.append(
            f"the container sets {', '.join(bad)}, which change(s) what the loader or the "
            "interpreter load; remove them from the container's environment (give the program "
            "its variables through the session)"
        )
    preload = _read(root, "/etc/ld.so.preload")
    if preload is not None and preloaded_libraries(preload):
        problems.append(
            "/etc/ld.so.preload loads " + ", ".join(preloaded_libraries(preload))
            + " into every program; Veil does not start with a preloaded library"
        )
    maps = _read(root, "/proc/self/maps")
    if maps is None:
        raise Refusal("cannot read /proc/self/maps; refusing to start unchecked")
    mapped = unmeasured_mappings(maps, exclude)
    if mapped:
        problems.append(
            "the launcher's own process has unmeasured files mapped (a preloaded library?): "
            + ", ".join(mapped)
        )
    info = _read(root, "/proc/self/mountinfo")
    if info is None:
        raise Refusal("cannot read /proc/self/mountinfo; refusing to start unchecked")
    for m in foreign_mounts(parse_mountinfo(info), host_paths):
        problems.append(
            f"{m.point} is a separate mount ({m.fstype} from {m.source}) over the image's root "
            "filesystem, so its files are not the measured ones; remove that volume, or mount "
            "it under /run, /tmp or /var/tmp"
        )
    if problems:
        raise Refusal("refusing to start: " + "; ".join(problems))
