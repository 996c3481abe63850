"""Where a manifest's input files are: `copy` and `requirements` entries of a service,
`services[].image_secrets` of a mesh.

sconectl runs in a container with the current directory mounted as its work directory, so it
reads every such path relative to the **current directory**, never relative to the manifest
(`sconectl apply -f v1/service.yaml` with `copy: [v1/app.py]`). Veil reads them there first.

- in the current directory only: taken.
- in both places (the manifest is not in the current directory) and they differ: the current
  directory's is taken, as sconectl takes it, with a warning that names the one left unused.
  Not an error: the sconectl script that does this works with sconectl, and must with Veil.
- beside the manifest only: started as `sconectl`, an error that names both places (sconectl
  would not find it); started as `veil`, Veil's own earlier rule takes it with a warning that
  names both places, so that `veil apply -f examples/x/service.yaml` from anywhere goes on
  working as the README and Veil's examples use it.
- in neither place: an error that names both.
"""

from __future__ import annotations

import filecmp
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Located", "WorkDir", "locate_input"]


@dataclass(frozen=True)
class WorkDir:
    """The current directory of an apply, and whether a file found only beside the manifest
    may be taken (`veil`: yes, with a warning; `sconectl`: no, an error)."""
    path: Path
    beside_manifest: bool = True


@dataclass(frozen=True)
class Located:
    path: Path  # where the entry is read from (may not exist: see `problem`)
    problem: str | None = None  # why it cannot be used, naming both places
    note: str | None = None  # a warning for the user

    @property
    def found(self) -> bool:
        return self.problem is None


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def _differ(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return False
    except OSError:
        return True
    if a.is_file() and b.is_file() and not a.is_symlink() and not b.is_symlink():
        return not filecmp.cmp(a, b, shallow=False)
    return True  # two folders (or links) of their own: not compared file by file


def _shown(p: Path) -> str:
    """`p` relative to the current directory when it is below it (what the user would type)."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def locate_input(entry: str, workdir: WorkDir | None, manifest_dir: Path,
                 what: str = "file or directory") -> Located:
    """Where `entry` (a relative path of the manifest) is read from; see the module's rules.
    Without `workdir` (a library caller, a generated service) the manifest's folder."""
    there = manifest_dir / entry
    if workdir is None:
        return Located(there, None if _exists(there) else f"no such {what}: {there}")
    here = workdir.path / entry
    if workdir.path.resolve() == manifest_dir.resolve():
        return Located(here, None if _exists(here) else f"no such {what}: {_shown(there)}")
    if _exists(here):
        if _exists(there) and _differ(here, there):
            return Located(here, note=(
                f"{entry}: taken from the current directory ({here}), as sconectl takes it; "
                f"the different {_shown(there)} beside the manifest is not used"))
        return Located(here)
    if _exists(there):
        if workdir.beside_manifest:
            return Located(there, note=(
                f"{entry}: not in the current directory ({here}); taken from the manifest's "
                f"folder ({_shown(there)}). sconectl resolves it against the current "
                "directory only"))
        return Located(here, problem=(
            f"not in the current directory ({here}), only beside the manifest "
            f"({_shown(there)}): sconectl resolves paths against the current directory, so "
            f"run from {_shown(manifest_dir)} or name it {_shown(there)}"))
    return Located(here, problem=(
        f"no such {what}: neither {here} (current directory) nor {_shown(there)} "
        "(manifest's folder)"))
