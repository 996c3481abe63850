"""Exit 0 when this checkout's Veil and every dependency it declares (with the test extra) are
installed at versions that satisfy pyproject.toml; otherwise print what is missing, exit 1.
Used by scripts/setup.sh to decide whether pip has work to do."""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def missing() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    out = []
    for text in wanted:
        req = Requirement(text)
        try:
            have = version(req.name)
        except PackageNotFoundError:
            out.append(f"{req.name} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(f"{req.name} {have} (wanted {req.specifier})")
    try:
        import veil
    except ImportError:
        out.append("veil (not installed)")
    else:
        if Path(veil.__file__).resolve().parents[2] != ROOT:
            out.append(f"veil (installed from {Path(veil.__file__).parents[2]}, not this checkout)")
    return out


if __name__ == "__main__":
    gaps = missing()
    for g in gaps:
        print(f"setup: needs {g}")
    sys.exit(1 if gaps else 0)
