"""The measurement of an image: defined here once, used at build and by the launcher at start.

It covers the image's whole root filesystem as built: every directory, regular file, symbolic
link and special file under `/`, each with its type, permission bits (setuid/setgid/sticky
included), owner and group, and the SHA-256 of a file's content, a link's target or a device's
number — minus a short, fixed list of runtime paths (`RUNTIME_PATHS`) and the injection-file
targets the service names. The *plan* in `/etc/veil/measured.json` fixes, at build time, the
roots (`/`), those exclusions (and which of them are `host_paths`, folders the host provides at
run time), the command, the pwd and the `local` environment; the plan is itself hashed into the
result, and its file is measured like any other.

    digest = SHA-256( b"veil-measurement\\0" + canonical JSON of the plan + b"\\0"
                      + for each entry, sorted by path bytes:
                        path \\0 type \\0 mode \\0 uid \\0 gid \\0 value \\0 )

type is one of `d f l c b p s`, mode the permission bits in octal, uid/gid decimal, value the hex
SHA-256 of a file's content, a link's target, `major:minor` of a device, else empty. No field
can hold a NUL byte, so the encoding is unambiguous. Links are never followed.

Entries are stat-ed and files hashed in parallel threads (system calls and `hashlib` release the
GIL), each file opened with O_NOFOLLOW|O_NONBLOCK so a swapped-in link or FIFO is an error, not
a detour or a hang. Every entry is read: nothing an attacker could forge (timestamps, a cache
in the image) can stand in for the content.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "PLAN_PATH",
    "RUNTIME_PATHS",
    "Entry",
    "MeasurementError",
    "MeasurementPlan",
    "MissingFileError",
    "digest_of",
    "is_excluded",
    "measure",
    "scan",
]

PLAN_PATH = "/etc/veil/measured.json"
VERSION = 2
# Written by the kernel or the container runtime, never taken from the image: the pseudo
# filesystems, the scratch directories, the three files every runtime (podman, Kubernetes)
# bind-mounts over the image's own, and /etc/mtab, which podman adds (a link to /proc/mounts)
# when the image has none.
RUNTIME_PATHS = (
    "/dev", "/etc/hostname", "/etc/hosts", "/etc/mtab", "/etc/resolv.conf", "/proc", "/run",
    "/sys", "/tmp", "/var/tmp",
)
_CHUNK = 1 << 18
_BATCH = 128  # entries per task of the hashing threads
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = {
    stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
    stat.S_IFBLK: "b", stat.S_IFIFO: "p", stat.S_IFSOCK: "s",
}


class MeasurementError(Exception):
    """The filesystem cannot be measured (the message names the path)."""


class MissingFileError(MeasurementError):
    """A root the plan names does not exist."""


class Entry(NamedTuple):
    path: str  # absolute path inside the image
    kind: str  # d f l c b p s
    mode: int  # permission bits, stat.S_IMODE
    uid: int
    gid: int
    value: str  # file: sha256 hex; link: target; device: major:minor; else ""


@dataclass
class MeasurementPlan:
    roots: list[str]
    command: str
    pwd: str
    local_env: dict[str, str]
    exclude: list[str] = field(default_factory=list)
    # `build.host_paths`: excluded folders the host provides at run time (a mount is accepted
    # there); also listed in `exclude`
    host_paths: list[str] = field(default_factory=list)

    def _doc(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "roots": sorted(posixpath.normpath(r) for r in self.roots),
            "exclude": sorted(posixpath.normpath(e) for e in self.exclude),
            "host_paths": sorted(posixpath.normpath(h) for h in self.host_paths),
            "command": self.command,
            "pwd": self.pwd,
            "local_env": self.local_env,
        }

    def to_json(self) -> str:
        return json.dumps(self._doc(), sort_keys=True, indent=1) + "\n"

    def canonical(self) -> bytes:
        doc = json.dumps(self._doc(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return doc.encode("utf-8")

    @classmethod
    def from_json(cls, text: str) -> MeasurementPlan:
        doc: dict[str, Any] = json.loads(text)
        if doc.get("version") != VERSION:
            raise ValueError(
                f"unsupported measurement plan version {doc.get('version')!r} (this launcher "
                f"reads version {VERSION})"
            )
        return cls(
            roots=[str(r) for r in doc["roots"]],
            command=str(doc["command"]),
            pwd=str(doc["pwd"]),
            local_env={str(k): str(v) for k, v in doc["local_env"].items()},
            exclude=[str(e) for e in doc.get("exclude", [])],
            host_paths=[str(h) for h in doc.get("host_paths", [])],
        )


def is_excluded(path: str, exclude: list[str] | tuple[str, ...]) -> bool:
    """Whether the image path `path` is, or lies under, one of `exclude`."""
    p = posixpath.normpath(path)
    return any(p == e or p.startswith(e.rstrip("/") + "/") for e in map(posixpath.normpath,
                                                                      exclude))


def _file_sha256(ip: str, hp: str, buf: bytearray, view: memoryview) -> str:
    try:
        fd = os.open(hp, _OPEN)
    except OSError as err:
        raise MeasurementError(f"cannot read {ip}: {err.strerror}") from None
    try:
        h = hashlib.sha256()
        while n := os.readv(fd, [buf]):
            h.update(view[:n])  # releases the GIL for all but the smallest reads
    finally:
        os.close(fd)
    return h.hexdigest()


def _entries(items: list[tuple[str, str, bool]], root_dev: int) -> list[Entry]:
    """One batch of (image path, host path, walked as a directory): stat, read, hash."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    out = []
    for ip, hp, walked in items:
        try:
            st = os.lstat(hp)
        except OSError as err:
            raise MeasurementError(f"cannot read {ip}: {err.strerror}") from None
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "?")
        value = ""
        if kind == "f":
            value = _file_sha256(ip, hp, buf, view)
        elif kind == "l":
            value = os.readlink(hp)
        elif kind in ("c", "b"):
            value = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        elif kind == "d" and st.st_dev != root_dev:
            raise MeasurementError(
                f"{ip} is on another filesystem than the image's root (a mount over a "
                "measured path)"
            )
        if (kind == "d") != walked:
            raise MeasurementError(f"{ip} changed while it was measured")
        out.append(Entry(ip, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value))
    return out


def _threads() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def scan(root: str, plan: MeasurementPlan) -> list[Entry]:
    """Every measured entry under `root` (the image's `/`; a mounted image at build time),
    sorted by path. Raises MeasurementError naming a path that cannot be read, or a directory
    that lies on another filesystem than `root` (a mount the measurement must not cross).

    This thread only lists directories; batches of entries are stat-ed, read and hashed by a
    pool of threads while it goes on (system calls and hashing release the GIL)."""
    excluded = {posixpath.normpath(e) for e in plan.exclude}
    root = os.path.abspath(root)
    root_dev = os.lstat(root).st_dev
    batch: list[tuple[str, str, bool]] = []
    futures: list[Future[list[Entry]]] = []
    with ThreadPoolExecutor(max_workers=_threads()) as pool:

        def add(ip: str, hp: str, is_dir: bool) -> None:
            batch.append((ip, hp, is_dir))
            if len(batch) >= _BATCH:
                futures.append(pool.submit(_entries, batch[:], root_dev))
                batch.clear()

        try:
            stack: list[tuple[str, str]] = []
            for r in sorted({posixpath.normpath(r) for r in plan.roots}):
                if is_excluded(r, tuple(excluded)):
                    continue
                hp = os.path.join(root, r.lstrip("/"))
                try:
                    is_dir = stat.S_ISDIR(os.lstat(hp).st_mode)
                except FileNotFoundError:
                    raise MissingFileError(r) from None
                add(r, hp, is_dir)
                if is_dir:
                    stack.append((r, hp))
            while stack:
                ip, hp = stack.pop()
                prefix = "/" if ip == "/" else ip + "/"
                try:
                    with os.scandir(hp) as it:
                        for de in it:
                            cip = prefix + de.name
                            if cip in excluded:
                                continue
                            is_dir = de.is_dir(follow_symlinks=False)
                            add(cip, de.path, is_dir)
                            if is_dir:
                                stack.append((cip, de.path))
                except OSError as err:
                    raise MeasurementError(f"cannot list {ip}: {err.strerror}") from None
            if batch:
                futures.append(pool.submit(_entries, batch[:], root_dev))
            out = {e.path: e for f in futures for e in f.result()}  # roots may overlap
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return sorted(out.values(), key=lambda e: os.fsencode(e.path))


def digest_of(entries: list[Entry], plan: MeasurementPlan) -> str:
    h = hashlib.sha256(b"veil-measurement\0" + plan.canonical() + b"\0")
    enc = os.fsencode
    parts = []
    for e in sorted(entries, key=lambda e: enc(e.path)):
        parts.append(b"%s\0%s\0%o\0%d\0%d\0%s\0" % (
            enc(e.path), e.kind.encode(), e.mode, e.uid, e.gid, enc(e.value)))
    h.update(b"".join(parts))
    return h.hexdigest()


def measure(root: str, plan: MeasurementPlan) -> str:
    """The measurement of the filesystem at `root` (the launcher passes `/`) under `plan`."""
    return digest_of(scan(root, plan), plan)
