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

Files are hashed in parallel threads (`hashlib` releases the GIL while it hashes), each opened
with O_NOFOLLOW|O_NONBLOCK so a swapped-in link or FIFO is an error, not a detour or a hang.
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
_BATCH = 64  # files per hashing task
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


def _hash_batch(paths: list[str]) -> list[str]:
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    out = []
    for p in paths:
        try:
            fd = os.open(p, _OPEN)
        except OSError as err:
            raise MeasurementError(f"cannot read {p}: {err.strerror}") from None
        try:
            h = hashlib.sha256()
            while n := os.readv(fd, [buf]):
                h.update(view[:n])
        finally:
            os.close(fd)
        out.append(h.hexdigest())
    return out


def _threads() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def scan(root: str, plan: MeasurementPlan) -> list[Entry]:
    """Every measured entry under `root` (the image's `/`; a mounted image at build time),
    sorted by path. Raises MeasurementError naming a path that cannot be read, or a directory
    that lies on another filesystem than `root` (a mount the measurement must not cross)."""
    excluded = {posixpath.normpath(e) for e in plan.exclude}
    root = os.path.abspath(root)
    root_dev = os.lstat(root).st_dev
    rows: list[list[Any]] = []  # [path, kind, mode, uid, gid, value]; files get theirs later
    files: list[tuple[int, str]] = []  # (row index, host path) still to hash
    seen_inodes: dict[tuple[int, int], int] = {}
    links: list[tuple[int, int]] = []  # (row index, row index of the first name of the inode)
    futures: list[tuple[list[int], Future[list[str]]]] = []
    pool = ThreadPoolExecutor(max_workers=_threads())

    def flush() -> None:
        if files:
            idx = [i for i, _ in files]
            futures.append((idx, pool.submit(_hash_batch, [hp for _, hp in files])))
            files.clear()

    def add(ip: str, hp: str, st: os.stat_result) -> bool:
        """Record one entry; True when it is a directory to walk."""
        fmt = stat.S_IFMT(st.st_mode)
        kind = _KINDS.get(fmt, "?")
        value = ""
        row = [ip, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value]
        if kind == "l":
            row[5] = os.readlink(hp)
        elif kind in ("c", "b"):
            row[5] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        elif kind == "f":
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen_inodes:  # hard links: read the content once
                links.append((len(rows), seen_inodes[key]))
            else:
                if st.st_nlink > 1:
                    seen_inodes[key] = len(rows)
                files.append((len(rows), hp))
                if len(files) >= _BATCH:
                    flush()
        elif kind == "d" and st.st_dev != root_dev:
            raise MeasurementError(
                f"{ip} is on another filesystem than the image's root (a mount over a "
                "measured path)"
            )
        rows.append(row)
        return kind == "d"

    try:
        stack: list[tuple[str, str]] = []
        for r in sorted({posixpath.normpath(r) for r in plan.roots}):
            if is_excluded(r, tuple(excluded)):
                continue
            hp = os.path.join(root, r.lstrip("/"))
            try:
                st = os.lstat(hp)
            except FileNotFoundError:
                raise MissingFileError(r) from None
            if add(r, hp, st):
                stack.append((r, hp))
        while stack:
            ip, hp = stack.pop()
            prefix = "/" if ip == "/" else ip + "/"
            try:
                with os.scandir(hp) as it:
                    children = [(prefix + de.name, de.path) for de in it]
            except OSError as err:
                raise MeasurementError(f"cannot list {ip}: {err.strerror}") from None
            for cip, chp in children:
                if cip in excluded:
                    continue
                if add(cip, chp, os.lstat(chp)):
                    stack.append((cip, chp))
        flush()
        for idx, fut in futures:
            for i, digest in zip(idx, fut.result(), strict=True):
                rows[i][5] = digest
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for i, first in links:
        rows[i][5] = rows[first][5]
    out = {r[0]: Entry(*r) for r in rows}  # overlapping roots name some entries twice
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
