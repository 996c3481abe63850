"""The runtime root filesystem of a Python base: only what a running service uses.

The launcher reads and hashes every file of the image at every start, so the image a service
runs in holds only what runs: the interpreter and its standard library (with the bytecode it
loads, so a start writes nothing), the shared libraries they need and those manylinux wheels may
link against (libstdc++, libgcc_s, zlib), the few files of `/etc` the C library and Python read,
the C.UTF-8 locale and the CA bundle. Not kept: shells, coreutils, package management and its
database, pip/setuptools/wheel, the login and filesystem tools, the time-zone database (a
program that needs it installs the `tzdata` wheel, which `zoneinfo` falls back to), glibc's
gconv modules (Python's codecs are its own; the C.UTF-8 locale needs none), documentation.

The set is computed from the dpkg database of the bootstrapped root filesystem: the files of the
dependency closure of `ROOT_PACKAGES` (stopping at `STOP_PACKAGES`), minus `DROPPED` parts of
those packages, plus the generated files in `EXTRA` (which no package lists) and the bytecode
of every kept module. The build base (the full root filesystem, with a shell and pip for `run:`
steps and the wrappers' builds) and the runtime base are made from the same root filesystem.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from pathlib import Path

from veil.image.reference import parse_reference

__all__ = [
    "DROPPED", "EXTRA", "ROOT_PACKAGES", "RUNTIME_LABEL", "RUNTIME_OF_LABEL", "RUNTIME_RECIPE",
    "RUNTIME_SUFFIX", "STOP_PACKAGES", "keep_set", "prune_to_runtime", "runtime_ref",
]

# names how the runtime set is chosen: part of the cached runtime image's name
RUNTIME_RECIPE = "runtime1"
# on a build base: the suffix of its runtime base's tag (`python:bookworm` →
# `python:bookworm-runtime`, in the same repository)
RUNTIME_LABEL = "dev.veil.runtime-base"
RUNTIME_SUFFIX = "-runtime"
# on both: the SHA-256 of the root filesystem they were made from (a build base and a runtime
# base pair only when they agree)
RUNTIME_OF_LABEL = "dev.veil.rootfs"
# `{v}`: the interpreter's version (3.11)
ROOT_PACKAGES = (
    "python3-minimal", "python{v}-minimal", "libpython{v}-minimal", "libpython{v}-stdlib",
    "libstdc++6", "libgcc-s1", "zlib1g", "libssl3", "netbase", "media-types",
)
# never followed (a dependency of a kept package that a running program does not need)
STOP_PACKAGES = (
    "dpkg", "perl-base", "debconf", "bash", "dash", "coreutils", "tar", "debianutils",
    "base-files", "install-info", "readline-common", "tzdata", "usrmerge", "usr-is-merged",
    "libc-bin", "ca-certificates", "openssl", "mime-support",
)
# parts of kept packages left out (image paths; a folder with all it holds)
DROPPED = (
    "/usr/share/doc", "/usr/share/man", "/usr/share/lintian", "/usr/share/locale",
    "/usr/share/binfmts", "/usr/share/python3", "/usr/share/pixmaps", "/usr/share/applications",
    "/usr/share/gcc", "/usr/share/gdb",
    "/usr/lib/x86_64-linux-gnu/gconv", "/usr/lib/x86_64-linux-gnu/audit",
    "/usr/lib/python{v}/test", "/usr/lib/python{v}/pydoc_data", "/usr/lib/python{v}/idlelib",
    "/usr/lib/python{v}/tkinter", "/usr/lib/python{v}/turtledemo",
    "/usr/lib/python{v}/ensurepip", "/usr/lib/python{v}/lib2to3",
    "/usr/lib/python{v}/distutils",
    "/usr/bin/py3compile", "/usr/bin/py3clean", "/usr/bin/pydoc3", "/usr/bin/pydoc{v}",
    "/usr/bin/pygettext3", "/usr/bin/pygettext{v}", "/usr/bin/py3versions",
)
# generated files no package lists, read by the C library or Python (kept when present)
EXTRA = (
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/os-release",
    "/usr/lib/os-release", "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl", "/usr/lib/locale/C.utf8",
    # the merged-/usr links (the loader is /lib64/ld-linux-x86-64.so.2 in every binary)
    "/bin", "/lib", "/lib64",
    # mount points and scratch folders every runtime expects
    "/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp", "/root", "/etc/veil",
)
_FIELD = re.compile(r"^([A-Za-z-]+):\s?(.*)$")
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def runtime_ref(build_base: str) -> str | None:
    """The runtime base beside the build base `build_base` (a name with a tag), or None for a
    base named by digest only."""
    ref = parse_reference(build_base)
    if not ref.tag:
        return None
    return f"{ref.name}:{ref.tag}{RUNTIME_SUFFIX}"


def _packages(root: Path) -> dict[str, set[str]]:
    """Installed package → the packages it depends on (every alternative; no versions)."""
    status = (root / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    out: dict[str, set[str]] = {}
    for block in status.split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and last:
                fields[last] += " " + line.strip()
            elif m := _FIELD.match(line):
                last = m.group(1)
                fields[last] = m.group(2)
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            deps = re.sub(r"\([^)]*\)|:any", "", fields.get("Depends", "") + ","
                          + fields.get("Pre-Depends", ""))
            out[fields["Package"]] = set(_NAME.findall(deps))
    return out


def _closure(packages: dict[str, set[str]], version: str) -> set[str]:
    todo = [p.format(v=version) for p in ROOT_PACKAGES]
    stop = set(STOP_PACKAGES)
    seen: set[str] = set()
    while todo:
        p = todo.pop()
        if p in seen or p in stop or p not in packages:
            continue
        seen.add(p)
        todo += packages[p]
    return seen


def _resolve_dirs(root: Path, path: str) -> str:
    """`path` with the symbolic links among its folders resolved inside `root` (dpkg lists
    `/lib/...`, which merged /usr makes `/usr/lib/...`)."""
    parts = path.strip("/").split("/")
    cur = "/"
    for part in parts[:-1]:
        nxt = posixpath.join(cur, part)
        for _ in range(8):
            host = root / nxt.lstrip("/")
            if not host.is_symlink():
                break
            target = os.readlink(host)
            nxt = posixpath.normpath(posixpath.join(posixpath.dirname(nxt), target))
        cur = nxt
    return posixpath.join(cur, parts[-1]) if parts[-1] else cur


def _listed(root: Path, package: str) -> list[str]:
    info = root / "var/lib/dpkg/info"
    found = [info / f"{package}.list", *sorted(info.glob(f"{package}:*.list"))]
    for p in found:
        if p.is_file():
            return [ln for ln in p.read_text(encoding="utf-8", errors="replace").splitlines()
                    if ln.startswith("/") and ln != "/."]
    return []


def _under(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def keep_set(root: Path, version: str) -> set[str]:
    """Image paths of the runtime root filesystem (files, links and the folders on their way)
    of the bootstrapped `root`, whose interpreter is Python `version` (3.11)."""
    packages = _packages(root)
    dropped = {d.format(v=version) for d in DROPPED}
    keep: set[str] = set()
    for pkg in _closure(packages, version):
        for path in _listed(root, pkg):
            path = _resolve_dirs(root, path)
            if not _under(path, dropped):
                keep.add(path)
    for extra in EXTRA:
        host = root / extra.lstrip("/")
        if host.is_symlink() or host.exists():
            keep.add(extra)
            if host.is_dir() and not host.is_symlink():
                keep.update("/" + str(p.relative_to(root)) for p in host.rglob("*"))
    # the bytecode of every kept module: without it, a start would write it (and change the
    # next measurement); only the interpreter's own tag, as its imports load
    tag = f".cpython-{version.replace('.', '')}"
    for path in list(keep):
        if path.endswith(".py"):
            folder, name = posixpath.split(path)
            cache = root / folder.lstrip("/") / "__pycache__"
            for pyc in cache.glob(f"{name[:-3]}{tag}*.pyc") if cache.is_dir() else ():
                keep.add(posixpath.join(folder, "__pycache__", pyc.name))
    # the folders on the way to each kept entry
    for path in list(keep):
        parent = posixpath.dirname(path)
        while parent not in keep and parent != "/":
            keep.add(parent)
            parent = posixpath.dirname(parent)
    return {p for p in keep if (root / p.lstrip("/")).is_symlink()
            or (root / p.lstrip("/")).exists()}


def prune_to_runtime(root: Path, version: str) -> tuple[int, int]:
    """Remove from `root` everything outside `keep_set`; (entries kept, entries removed)."""
    keep = keep_set(root, version)
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        rel = "/" + os.path.relpath(dirpath, root) if dirpath != str(root) else "/"
        rel = posixpath.normpath(rel)
        for name in list(dirnames):
            path = posixpath.join(rel, name)
            host = os.path.join(dirpath, name)
            if path in keep:
                continue
            if os.path.islink(host):
                os.unlink(host)
            else:
                removed += sum(len(d) + len(f) for _, d, f in os.walk(host)) + 1
                shutil.rmtree(host)
            dirnames.remove(name)
        for name in filenames:
            path = posixpath.join(rel, name)
            if path not in keep:
                host = os.path.join(dirpath, name)
                st = os.lstat(host)
                if stat.S_ISDIR(st.st_mode):  # pragma: no cover - os.walk lists folders apart
                    continue
                os.unlink(host)
                removed += 1
    return len(keep), removed
