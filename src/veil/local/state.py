"""What `veil up` remembers beyond podman's labels, under `$VEIL_HOME/local/`:

    here/<digest of a directory>.json   the last `veil up` run in that directory: its mesh
                                        file and mesh name — `veil ps`/`logs`/`down` without
                                        `-f` act on it, as docker compose acts on the project
                                        of the current directory
    meshes/<mesh>.json                  a mesh `veil up` of this Veil home runs (`--all` means
                                        these, not other users' meshes on the same podman),
                                        with the services of its last `veil up` that have no
                                        container (podman could not create or start it: a port
                                        taken, an image not pullable) and why — `veil ps`
                                        shows them; `veil down` forgets the mesh

Written whole or not at all (temp + rename); a record that cannot be read is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from veil.fsutil import atomic_write_text
from veil.paths import home_dir

__all__ = ["Here", "failed_services", "forget_mesh", "last_up", "meshes", "record_mesh",
           "record_up"]


@dataclass(frozen=True)
class Here:
    dir: str
    file: str  # the mesh file `veil up` was given (absolute)
    mesh: str  # the name `veil up` gave its containers (`veil.local.up.mesh_name`)


def _here_file(directory: Path) -> Path:
    key = hashlib.sha256(str(directory).encode()).hexdigest()[:24]
    return home_dir() / "local" / "here" / f"{key}.json"


def _mesh_file(mesh: str) -> Path:
    return home_dir() / "local" / "meshes" / f"{mesh}.json"


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cwd() -> Path:
    return Path(os.getcwd()).resolve()


def record_up(file: Path, mesh: str, directory: Path | None = None) -> None:
    """Remember that `veil up -f file` (mesh `mesh`) ran in `directory` (default: here)."""
    where = (directory or _cwd()).resolve()
    path = _here_file(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"dir": str(where), "file": str(file.resolve()),
                                        "mesh": mesh}) + "\n")


def last_up(directory: Path | None = None) -> Here | None:
    """The last `veil up` run in `directory` (default: here), if any."""
    where = (directory or _cwd()).resolve()
    data = _read(_here_file(where))
    if not data or data.get("dir") != str(where):
        return None
    file, mesh = data.get("file"), data.get("mesh")
    if not isinstance(file, str) or not isinstance(mesh, str):
        return None
    return Here(str(where), file, mesh)


def record_mesh(mesh: str, failed: dict[str, str] | None = None) -> None:
    """Remember that this Veil home runs `mesh`, and its services without a container after
    this `veil up`, with why."""
    path = _mesh_file(mesh)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"mesh": mesh, "failed": failed or {}},
                                       sort_keys=True) + "\n")


def failed_services(mesh: str) -> dict[str, str]:
    data = _read(_mesh_file(mesh)) or {}
    failed = data.get("failed")
    if not isinstance(failed, dict):
        return {}
    return {str(k): str(v) for k, v in failed.items()}


def meshes() -> list[str]:
    """The meshes `veil up` of this Veil home runs (until `veil down`)."""
    root = home_dir() / "local" / "meshes"
    return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []


def forget_mesh(mesh: str | None) -> None:
    """Forget `mesh` (None: every mesh)."""
    for m in [mesh] if mesh is not None else meshes():
        with contextlib.suppress(OSError):
            _mesh_file(m).unlink(missing_ok=True)
