"""Requirements resolved on the host, for the base image's Python, installed as one layer.

A build step cannot count on reaching a package index (the image does not trust the TLS the host
trusts), so pip runs here: it downloads wheels for the base image's Python version and platform,
then installs them with `--no-index --target` into a directory that the Containerfile copies in.
The installed tree is measured, and cached by the hash of the requirements file and the Python
version, so an unchanged file is not resolved again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from veil.errors import OperationalError
from veil.image.tools import tail
from veil.paths import home_dir

__all__ = ["install_requirements"]

_PLATFORMS = (
    "manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
    "manylinux2014_x86_64", "linux_x86_64",
)


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, check=False,
    )
    if proc.returncode != 0:
        raise OperationalError(
            f"{what}:\n{tail(proc.stderr or proc.stdout)}",
            hint="check the requirements file and that the package index is reachable; "
            "only binary wheels are used (the image has no compiler)",
        )


def install_requirements(requirements: Path, python_version: str) -> Path:
    """A directory holding the installed requirements (read-only: copy it, do not change it)."""
    text = requirements.read_bytes()
    key = hashlib.sha256(text + b"\0" + python_version.encode()).hexdigest()[:24]
    cache = home_dir() / "cache" / "requirements" / key
    if cache.is_dir():
        return cache
    plat: list[str] = []
    for p in _PLATFORMS:
        plat += ["--platform", p]
    target = ["--python-version", python_version, "--implementation", "cp", *plat,
              "--only-binary=:all:"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache.parent))
    try:
        _pip(["download", "-q", "-r", str(requirements), "-d", str(work / "wheels"), *target],
             f"downloading the wheels of {requirements.name} for Python {python_version} failed")
        _pip(["install", "-q", "--no-index", "--find-links", str(work / "wheels"), "--no-compile",
              "--target", str(work / "site"), *target, "-r", str(requirements)],
             f"installing {requirements.name} failed")
        (work / "site").rename(work.parent / f".{key}.site")
        (work.parent / f".{key}.site").rename(cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return cache
