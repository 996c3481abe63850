"""`veil base create python|java`: base images made without internet access.

debootstrap (minbase + python3 + pip; for Java, python3 + Debian's JRE) from a Debian mirror, apt
caches and lists stripped, imported as a one-layer image with the interpreter's measurement
label, and pushed. A Java base holds python3 too: the launcher every image starts with is
Python. The debootstrapped root filesystem can be cached as a tarball, so a second base build
skips the bootstrap (~40 s for Python, longer for the JRE).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from veil.errors import OperationalError
from veil.image.interpreter import INTERPRETER_LABEL, interpreter_of_rootfs
from veil.image.push import push_image
from veil.image.reference import (
    DEFAULT_BASE,
    DEFAULT_JAVA_BASE,
    default_base,
    parse_reference,
)
from veil.image.tools import container_env, require, run_tool, tail, tls_flag

__all__ = [
    "BASES", "DEFAULT_BASE", "DEFAULT_JAVA_BASE", "DEFAULT_MIRROR", "SUITE", "Flavour",
    "create_base", "create_python_base", "default_base",
]

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Flavour:
    name: str
    packages: str  # debootstrap --include
    default_ref: str
    cmd: str  # the image's default command (a Veil image replaces it with the launcher)


BASES = {
    "python": Flavour("python", "python3,python3-pip", DEFAULT_BASE, "python3"),
    # bookworm's JRE is 17; `java`, `java17` and their -glibc variants run on it
    "java": Flavour("java", "python3,openjdk-17-jre-headless", DEFAULT_JAVA_BASE, "java"),
}
_STRIP = ("var/cache/apt/archives", "var/lib/apt/lists", "var/cache/debconf", "var/log")


def _bootstrap(dest: Path, mirror: str, packages: str) -> None:
    require("debootstrap")
    cmd = [
        "debootstrap", "--variant=minbase", f"--include={packages}", SUITE, str(dest), mirror,
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise OperationalError(
            f"debootstrap of Debian {SUITE} from {mirror} failed:\n"
            + tail(proc.stdout + proc.stderr),
            hint="check that the mirror is reachable (or pass --mirror) and that you are root",
        )
    for rel in _STRIP:
        p = dest / rel
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def _rootfs_tarball(cache: Path | None, mirror: str, progress: Callable[[str], None],
                    flavour: Flavour = BASES["python"]) -> Path:
    """The tarball of a bootstrapped root filesystem, from the cache when there is one."""
    if cache is not None:
        tarball = cache / f"debian-{SUITE}-{flavour.name}-minbase.tar"
        if tarball.exists():
            progress(f"using cached root filesystem {tarball}")
            return tarball
    else:
        tarball = Path(tempfile.mkdtemp(prefix="veil-base-")) / "rootfs.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="veil-debootstrap-", dir="/var/tmp"))
    try:
        progress(f"debootstrap {SUITE} (minbase, {flavour.packages}) from {mirror}")
        _bootstrap(work / "rootfs", mirror, flavour.packages)
        tmp = tarball.with_name(f".{tarball.name}.tmp")
        r = subprocess.run(
            ["tar", "-C", str(work / "rootfs"), "--numeric-owner", "-cf", str(tmp), "."],
            capture_output=True, check=False,
        )
        if r.returncode != 0:
            raise OperationalError(f"packing the root filesystem failed:\n{tail(r.stderr)}")
        os.replace(tmp, tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def _import(tarball: Path, to: str, what: str, progress: Callable[[str], None],
            cmd: str = "python3") -> None:
    progress("importing the root filesystem")
    cid = run_tool(["buildah", "from", "scratch"], what=what).stdout.decode().strip()
    try:
        mnt = run_tool(["buildah", "mount", cid], what=what).stdout.decode().strip()
        r = subprocess.run(
            ["tar", "-C", mnt, "--numeric-owner", "-xpf", str(tarball)],
            capture_output=True, check=False,
        )
        if r.returncode != 0:
            raise OperationalError(
                f"{what}: unpacking the root filesystem failed:\n{tail(r.stderr)}"
            )
        interp = interpreter_of_rootfs(mnt)
        run_tool(
            ["buildah", "config",
             "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--env", "LANG=C.UTF-8", "--cmd", cmd,
             "--label", f"{INTERPRETER_LABEL}={interp.to_json()}", cid],
            what=what,
        )
        run_tool(["buildah", "commit", "--rm", "-q", cid, to], what=what)
        cid = ""
    finally:
        if cid:
            run_tool(["buildah", "rm", cid], what=what)


def create_python_base(
    to: str,
    *,
    cache: Path | None = None,
    mirror: str = DEFAULT_MIRROR,
    push: bool = True,
    progress: Callable[[str], None] = lambda _m: None,
) -> str | None:
    """Build the Python base image `to`; returns the pushed digest (None with push=False)."""
    return create_base("python", to, cache=cache, mirror=mirror, push=push, progress=progress)


def create_base(
    kind: str,
    to: str,
    *,
    cache: Path | None = None,
    mirror: str = DEFAULT_MIRROR,
    push: bool = True,
    progress: Callable[[str], None] = lambda _m: None,
) -> str | None:
    """Build the base image of `kind` (python, java) as `to`; the pushed digest, or None."""
    flavour = BASES[kind]
    tarball = _rootfs_tarball(cache, mirror, progress, flavour)
    what = f"building base image {to}"
    # With a cache, the imported image is kept under a local name tied to the tarball, so the
    # next `base create` (another registry, a new test session) only tags and pushes it.
    st = tarball.stat()
    cached = f"localhost/veil-base-cache:{st.st_size}-{st.st_mtime_ns}" if cache else None
    if cached and subprocess.run(
        ["buildah", "inspect", "--type", "image", cached], capture_output=True,
        env=container_env(), check=False,
    ).returncode == 0:
        progress(f"using cached base image {cached}")
        run_tool(["buildah", "tag", cached, to], what=what)
    else:
        _import(tarball, to, what, progress, flavour.cmd)
        if cached:
            run_tool(["buildah", "tag", to, cached], what=what)
    if not push:
        return None
    progress(f"pushing {to}")
    digest = push_image(to)
    # the pushed manifest differs from the local one (compressed layers); pulling it back (no
    # data moves) makes the local image carry the registry digest that builds pin in FROM
    pinned = f"{parse_reference(to).name}@{digest}"
    run_tool(["buildah", "pull", "--quiet", *tls_flag(to), pinned], what=f"re-reading {pinned}")
    return digest
