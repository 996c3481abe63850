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

The walk lists directories (their entry types come with the listing); the entries, sorted, are
then stat-ed and read in batches by worker processes forked for the purpose, one per CPU, while
the caller goes on (the launcher talks to CAS meanwhile): in one Python process the per-file work
holds the GIL and threads gain nothing. Workers hand their encoded batches back in memory files;
without fork (or in a process that already runs other threads, where a fork could inherit a held
lock) the same batches are encoded in the calling process. Either way the bytes hashed are the
same. Each file is opened with O_NOFOLLOW|O_NONBLOCK and its type checked on the open descriptor,
so a swapped-in link or FIFO is an error, not a detour or a hang. Every entry is read: nothing an
attacker could forge (timestamps, a cache in the image) can stand in for the content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import stat
import sys
from collections import namedtuple

# `typing` costs every start a few milliseconds of CPU: only the type checker reads it here
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

__all__ = [
    "PLAN_PATH",
    "RUNTIME_PATHS",
    "Entry",
    "MeasurementError",
    "MeasurementPlan",
    "Measuring",
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
# Worker processes; None: one per CPU this process may run on (at most 8). 0: no fork.
WORKERS: int | None = None
_CHUNK = 1 << 20
_BATCH = 48  # entries per task of the workers
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = {
    stat.S_IFDIR: b"d", stat.S_IFREG: b"f", stat.S_IFLNK: b"l", stat.S_IFCHR: b"c",
    stat.S_IFBLK: b"b", stat.S_IFIFO: b"p", stat.S_IFSOCK: b"s",
}
# how the listing saw an entry (from the directory's entry types, no stat)
_DIR, _FILE, _OTHER = 0, 1, 2
_ERROR = 0xFFFFFFFF  # batch number of a worker's error record


class MeasurementError(Exception):
    """The filesystem cannot be measured (the message names the path)."""


class MissingFileError(MeasurementError):
    """A root the plan names does not exist."""


if TYPE_CHECKING:
    class Entry(NamedTuple):
        path: str  # absolute path inside the image
        kind: str  # d f l c b p s
        mode: int  # permission bits, stat.S_IMODE
        uid: int
        gid: int
        value: str  # file: sha256 hex; link: target; device: major:minor; else ""
else:
    Entry = namedtuple("Entry", "path kind mode uid gid value")


class MeasurementPlan:
    """What `/etc/veil/measured.json` fixes (a plain class: the launcher imports no
    `dataclasses`, whose import alone costs a start several milliseconds)."""

    def __init__(self, roots: list[str], command: str, pwd: str, local_env: dict[str, str],
                 exclude: list[str] | None = None, host_paths: list[str] | None = None) -> None:
        self.roots = roots
        self.command = command
        self.pwd = pwd
        self.local_env = local_env
        self.exclude: list[str] = list(exclude or [])
        # `build.host_paths`: excluded folders the host provides at run time (a mount is
        # accepted there); also listed in `exclude`
        self.host_paths: list[str] = list(host_paths or [])

    def _fields(self) -> tuple[object, ...]:
        return (self.roots, self.command, self.pwd, self.local_env, self.exclude,
                self.host_paths)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MeasurementPlan):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"MeasurementPlan(roots={self.roots!r}, command={self.command!r}, "
                f"pwd={self.pwd!r}, local_env={self.local_env!r}, exclude={self.exclude!r}, "
                f"host_paths={self.host_paths!r})")

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


def _header(plan: MeasurementPlan) -> bytes:
    return b"veil-measurement\0" + plan.canonical() + b"\0"


def _line(path: bytes, kind: bytes, mode: int, uid: int, gid: int, value: bytes) -> bytes:
    return b"%s\0%s\0%o\0%d\0%d\0%s\0" % (path, kind, mode, uid, gid, value)


def _name(ip: bytes) -> str:
    return os.fsdecode(ip)


def _listing(root: str, plan: MeasurementPlan) -> list[tuple[bytes, bytes, int]]:
    """(image path, host path, how listed) of every measured entry, sorted by image path.
    Only directories are read here; the type of their entries comes with the listing."""
    excluded = {os.fsencode(posixpath.normpath(e)) for e in plan.exclude}
    broot = os.fsencode(os.path.abspath(root))
    roots = sorted({posixpath.normpath(r) for r in plan.roots})
    items: list[tuple[bytes, bytes, int]] = []
    stack: list[tuple[bytes, bytes]] = []
    for r in roots:
        if is_excluded(r, plan.exclude):
            continue
        ip = os.fsencode(r)
        hp = os.path.join(broot, ip.lstrip(b"/"))
        try:
            mode = os.lstat(hp).st_mode
        except FileNotFoundError:
            raise MissingFileError(r) from None
        except OSError as err:
            raise MeasurementError(f"cannot read {r}: {err.strerror}") from None
        how = _DIR if stat.S_ISDIR(mode) else _FILE if stat.S_ISREG(mode) else _OTHER
        items.append((ip, hp, how))
        if how == _DIR:
            stack.append((ip, hp))
    while stack:
        ip, hp = stack.pop()
        prefix = b"/" if ip == b"/" else ip + b"/"
        try:
            with os.scandir(hp) as it:
                for de in it:
                    cip = prefix + de.name
                    if cip in excluded:
                        continue
                    if de.is_dir(follow_symlinks=False):
                        items.append((cip, de.path, _DIR))
                        stack.append((cip, de.path))
                    elif de.is_file(follow_symlinks=False):
                        items.append((cip, de.path, _FILE))
                    else:
                        items.append((cip, de.path, _OTHER))
        except OSError as err:
            raise MeasurementError(f"cannot list {_name(ip)}: {err.strerror}") from None
    if len(roots) > 1:  # roots may overlap
        return sorted(set(items))
    items.sort()
    return items


def _file_sha256(ip: bytes, fd: int, size: int, buf: bytearray, view: memoryview) -> bytes:
    """The SHA-256 (hex) of what the open file `fd` holds, read to its end; a file of less
    than _CHUNK bytes takes one read (a short read of a regular file is its end)."""
    if size < _CHUNK:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return hashlib.sha256(data).hexdigest().encode()
        h = hashlib.sha256(data)
    else:
        h = hashlib.sha256()
    while n := os.readv(fd, [buf]):
        h.update(view[:n])  # releases the GIL for all but the smallest reads
    return h.hexdigest().encode()


def _encode(items: list[tuple[bytes, bytes, int]], root_dev: int) -> bytes:
    """One batch of entries, stat-ed, read and hashed: their lines of the measurement."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    out = []
    for ip, hp, how in items:
        if how == _FILE:
            try:
                fd = os.open(hp, _OPEN)
            except OSError as err:
                raise MeasurementError(f"cannot read {_name(ip)}: {err.strerror}") from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise MeasurementError(f"{_name(ip)} changed while it was measured")
                value = _file_sha256(ip, fd, st.st_size, buf, view)
            except OSError as err:
                raise MeasurementError(f"cannot read {_name(ip)}: {err.strerror}") from None
            finally:
                os.close(fd)
            out.append(_line(ip, b"f", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value))
            continue
        try:
            st = os.lstat(hp)
            fmt = stat.S_IFMT(st.st_mode)
            value = os.readlink(hp) if fmt == stat.S_IFLNK else b""
        except OSError as err:
            raise MeasurementError(f"cannot read {_name(ip)}: {err.strerror}") from None
        if (fmt == stat.S_IFDIR) != (how == _DIR) or fmt == stat.S_IFREG:
            raise MeasurementError(f"{_name(ip)} changed while it was measured")
        if fmt == stat.S_IFDIR and st.st_dev != root_dev:
            raise MeasurementError(
                f"{_name(ip)} is on another filesystem than the image's root (a mount over a "
                "measured path)"
            )
        if fmt in (stat.S_IFCHR, stat.S_IFBLK):
            value = b"%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        kind = _KINDS.get(fmt, b"?")
        out.append(_line(ip, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value))
    return b"".join(out)


def _workers(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """One per CPU this process may use: its CPU affinity, capped by the container's CPU quota
    (cgroup v2 `cpu.max`, e.g. a Kubernetes limit of 500m is one), at most 8."""
    if WORKERS is not None:
        return WORKERS
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open(cpu_max, "rb") as f:
            quota, period = f.read().split()[:2]
        if quota != b"max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, min(8, cpus))


def _may_fork() -> bool:
    """fork() copies only the calling thread: with other threads running, a lock one of them
    holds (in OpenSSL, say) would stay locked in the child for good."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    return hasattr(os, "fork") and hasattr(os, "memfd_create")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _record(index: int, data: bytes) -> bytes:
    return index.to_bytes(4, "little") + len(data).to_bytes(4, "little") + data


class Measuring:
    """A measurement under way. Creating it lists the image and starts the worker processes;
    `digest()` has the calling process take its share of the batches, waits for the workers
    and returns the value. In between, the caller is free (the launcher asks CAS for a nonce).
    """

    def __init__(self, root: str, plan: MeasurementPlan, workers: int | None = None) -> None:
        self.plan = plan
        self._root_dev = os.lstat(root).st_dev
        items = _listing(root, plan)
        size = max(_BATCH, -(-len(items) // 8192))  # the task pipe holds every batch number
        self._batches = [items[i:i + size] for i in range(0, len(items), size)]
        self._parts: list[bytes | None] = [None] * len(self._batches)
        self._kids: list[tuple[int, int]] = []  # (pid, memory file of its results)
        self._tasks = -1
        n = _workers() if workers is None else workers
        if n > 0 and len(self._batches) > 1 and _may_fork():
            self._fork(n)

    def _fork(self, n: int) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            _write_all(w, b"".join(i.to_bytes(4, "little") for i in range(len(self._batches))))
        finally:
            os.close(w)
        self._tasks = r
        for _ in range(n):
            try:
                out = os.memfd_create("veil-measure", os.MFD_CLOEXEC)
            except OSError:
                break
            try:
                pid = os.fork()
            except OSError:
                os.close(out)
                break
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                self._work(out)
            self._kids.append((pid, out))

    def _next(self) -> int | None:
        """The number of a batch nobody has taken yet (4-byte reads of a pipe written in full
        before any reader started are atomic), or None when all are taken."""
        if self._tasks < 0:
            return None
        got = os.read(self._tasks, 4)
        return int.from_bytes(got, "little") if got else None

    def _work(self, out: int) -> None:
        """A worker's whole life: encode batches until none is left, then exit."""
        code = 0
        try:
            while (i := self._next()) is not None:
                _write_all(out, _record(i, _encode(self._batches[i], self._root_dev)))
        except BaseException as err:  # reported to the parent, never raised in the child
            msg = str(err) if isinstance(err, MeasurementError) else f"worker failed: {err!r}"
            with contextlib.suppress(BaseException):
                _write_all(out, _record(_ERROR, msg.encode("utf-8", "replace")))
            code = 1
        finally:
            os._exit(code)

    def _collect(self, pid: int, out: int) -> str | None:
        """Read a finished worker's results into place; its error message, if it failed."""
        os.waitpid(pid, 0)
        size = os.fstat(out).st_size
        os.lseek(out, 0, os.SEEK_SET)
        data = bytearray()
        while len(data) < size and (chunk := os.read(out, size - len(data))):
            data += chunk
        view = memoryview(data)
        at = 0
        while at + 8 <= len(view):
            i = int.from_bytes(view[at:at + 4], "little")
            n = int.from_bytes(view[at + 4:at + 8], "little")
            if at + 8 + n > len(view):  # cut short (the worker was killed while writing)
                break
            body = bytes(view[at + 8:at + 8 + n])
            at += 8 + n
            if i == _ERROR:
                return body.decode("utf-8", "replace")
            self._parts[i] = body
        return None

    def _stop(self) -> None:
        for pid, out in self._kids:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
            os.close(out)
        self._kids = []

    def encoded(self) -> bytes:
        """Every entry's line, in order (what `digest()` hashes after the plan)."""
        try:
            if self._tasks >= 0:
                while (i := self._next()) is not None:
                    self._parts[i] = _encode(self._batches[i], self._root_dev)
            else:
                for i, batch in enumerate(self._batches):
                    self._parts[i] = _encode(batch, self._root_dev)
            errors = []
            while self._kids:
                pid, out = self._kids.pop()
                try:
                    err = self._collect(pid, out)
                finally:
                    os.close(out)
                if err:
                    errors.append(err)
            if errors:
                raise MeasurementError(errors[0])
        except BaseException:
            self._stop()
            raise
        finally:
            if self._tasks >= 0:
                os.close(self._tasks)
                self._tasks = -1
        missing = [i for i, p in enumerate(self._parts) if p is None]
        if missing:  # a worker that died without a word (killed)
            raise MeasurementError("a measuring process ended before its work was done")
        return b"".join(p for p in self._parts if p is not None)

    def digest(self) -> str:
        return hashlib.sha256(_header(self.plan) + self.encoded()).hexdigest()

    def close(self) -> None:
        """Stop the workers of a measurement given up on (nothing to do after `encoded`)."""
        self._stop()
        if self._tasks >= 0:
            os.close(self._tasks)
            self._tasks = -1


def scan(root: str, plan: MeasurementPlan, workers: int | None = None) -> list[Entry]:
    """Every measured entry under `root` (the image's `/`; a mounted image at build time),
    sorted by path. Raises MeasurementError naming a path that cannot be read, or a directory
    that lies on another filesystem than `root` (a mount the measurement must not cross)."""
    fields = Measuring(root, plan, workers).encoded().split(b"\0")
    dec = os.fsdecode
    return [
        Entry(dec(fields[i]), fields[i + 1].decode(), int(fields[i + 2], 8),
              int(fields[i + 3]), int(fields[i + 4]), dec(fields[i + 5]))
        for i in range(0, len(fields) - 1, 6)
    ]


def digest_of(entries: list[Entry], plan: MeasurementPlan) -> str:
    enc = os.fsencode
    parts = [
        _line(enc(e.path), e.kind.encode(), e.mode, e.uid, e.gid, enc(e.value))
        for e in sorted(entries, key=lambda e: enc(e.path))
    ]
    return hashlib.sha256(_header(plan) + b"".join(parts)).hexdigest()


def measure(root: str, plan: MeasurementPlan, workers: int | None = None) -> str:
    """The measurement of the filesystem at `root` (the launcher passes `/`) under `plan`."""
    return Measuring(root, plan, workers).digest()
