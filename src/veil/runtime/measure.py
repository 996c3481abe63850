"""The measurement of an image: defined here once, used at build and by the launcher at start.

A SHA-256 over a canonical JSON document holding the sorted list of (path, mode, sha256) of every
measured file, plus the command, the pwd and the `local` environment. Which paths are measured is
fixed at build time in `/etc/veil/measured.json` (the *plan*): its `roots` are files or directories
(walked completely, so an extra file changes the result), its `exclude` lists paths the launcher
itself writes later (injection files). The plan also carries the command, pwd and local
environment, so changing any of them changes the measurement.

Symlinks are measured as links (mode "link", sha256 of the target text), never followed: a
redirected `/usr/bin/python3` is a different measurement.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PLAN_PATH",
    "FileEntry",
    "MeasurementPlan",
    "MissingFileError",
    "digest_of",
    "measure",
    "scan",
]

PLAN_PATH = "/etc/veil/measured.json"
VERSION = 1
_CHUNK = 1 << 20


class MissingFileError(Exception):
    """A path the plan names does not exist."""


@dataclass(frozen=True, order=True)
class FileEntry:
    path: str  # absolute path inside the image
    mode: str  # "0644"-style permission bits, or "link"
    sha256: str


@dataclass
class MeasurementPlan:
    roots: list[str]
    command: str
    pwd: str
    local_env: dict[str, str]
    exclude: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        doc = {
            "version": VERSION,
            "roots": sorted(self.roots),
            "exclude": sorted(self.exclude),
            "command": self.command,
            "pwd": self.pwd,
            "local_env": self.local_env,
        }
        return json.dumps(doc, sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> MeasurementPlan:
        doc: dict[str, Any] = json.loads(text)
        if doc.get("version") != VERSION:
            raise ValueError(f"unsupported measurement plan version {doc.get('version')!r}")
        return cls(
            roots=[str(r) for r in doc["roots"]],
            command=str(doc["command"]),
            pwd=str(doc["pwd"]),
            local_env={str(k): str(v) for k, v in doc["local_env"].items()},
            exclude=[str(e) for e in doc.get("exclude", [])],
        )


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _entry(host_path: str, image_path: str) -> FileEntry | None:
    st = os.lstat(host_path)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(host_path)
        return FileEntry(image_path, "link", hashlib.sha256(target.encode()).hexdigest())
    if stat.S_ISREG(st.st_mode):
        return FileEntry(image_path, f"{stat.S_IMODE(st.st_mode):04o}", _file_sha256(host_path))
    return None  # directories are walked; devices, fifos and sockets carry no content


def scan(root: str, plan: MeasurementPlan) -> list[FileEntry]:
    """Every measured file under `root` (the image's `/`; a staging directory at build time)."""
    excluded = {os.path.normpath(e) for e in plan.exclude} | {PLAN_PATH}
    out: list[FileEntry] = []

    def host(image_path: str) -> str:
        return os.path.join(root, image_path.lstrip("/"))

    for r in sorted({os.path.normpath(r) for r in plan.roots}):
        hp = host(r)
        if not os.path.lexists(hp):
            raise MissingFileError(r)
        if os.path.isdir(hp) and not os.path.islink(hp):
            for dirpath, dirnames, filenames in os.walk(hp):
                dirnames.sort()
                rel = os.path.relpath(dirpath, hp)
                base = r if rel == "." else os.path.join(r, rel)
                # a symlinked directory is listed by os.walk among dirnames but not entered
                links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
                for name in sorted(filenames + links):
                    ip = os.path.join(base, name)
                    if ip in excluded:
                        continue
                    e = _entry(os.path.join(dirpath, name), ip)
                    if e is not None:
                        out.append(e)
        elif r not in excluded:
            e = _entry(hp, r)
            if e is not None:
                out.append(e)
    return sorted(set(out))


def digest_of(entries: list[FileEntry], plan: MeasurementPlan) -> str:
    doc = {
        "version": VERSION,
        "files": [[e.path, e.mode, e.sha256] for e in sorted(set(entries))],
        "command": plan.command,
        "pwd": plan.pwd,
        "local_env": plan.local_env,
    }
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def measure(root: str, plan: MeasurementPlan) -> str:
    """The measurement of the filesystem at `root` (the launcher passes `/`) under `plan`."""
    return digest_of(scan(root, plan), plan)
