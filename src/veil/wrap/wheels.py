"""Wheels for a wrapped build context, so that its Containerfile builds without a package index.

pip runs on the host (which can reach the index) and downloads binary wheels for the base
image's Python; the Containerfile bind-mounts them for one `pip install --no-index`, so no layer
keeps them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from veil.errors import OperationalError

__all__ = ["WHEELS_DIR", "download_wheels"]

WHEELS_DIR = "wheels"
_PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
              "manylinux2014_x86_64", "linux_x86_64")


def download_wheels(requirements: Path, dest: Path, python_version: str) -> None:
    plat = [arg for p in _PLATFORMS for arg in ("--platform", p)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
         *plat, "-r", str(requirements), "-d", str(dest)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise OperationalError(
            f"downloading the wheels of {requirements.name} for Python {python_version} failed:\n"
            + "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:]),
            hint="check the requirements and that the package index is reachable; only binary "
            "wheels are used (the image has no compiler)",
        )
