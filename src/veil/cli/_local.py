"""What `veil up`, `veil ps`, `veil logs` and `veil down` share: the table of services, the mesh
they act on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from veil.local.up import ServiceStatus

__all__ = ["DEFAULT_FILE", "mesh_of", "service_table"]


def service_table(services: list[ServiceStatus], title: str | None = None) -> Table:
    table = Table(title=title)
    meshes = len({s.mesh for s in services}) > 1  # `veil ps --all`: say which mesh
    for col in (("mesh",) if meshes else ()) + (
            "service", "image digest", "state", "attested", "port", "health"):
        table.add_column(col, overflow="fold")
    for s in services:
        digest = s.image.partition("@")[2][:19] or s.image
        attested = {True: "yes", False: "no", None: "-"}[s.attested]
        table.add_row(*((s.mesh,) if meshes else ()), s.service, digest, s.state, attested,
                      f"127.0.0.1:{s.port}" if s.port else "-", s.health)
    return table


DEFAULT_FILE = Path("mesh.yaml")


def mesh_of(file: Path | None, every: bool = False, *, required: bool = True) -> str | None:
    """The mesh a command acts on, as docker compose picks its project: `-f FILE`'s; else the
    last `veil up` run in this directory; else `./mesh.yaml`'s; `--all` (`every`): every mesh
    (None). Nothing of these: a user error (`required`), or None."""
    from veil.errors import UserError

    if file is not None and every:
        raise UserError("-f names one mesh and --all every mesh: give one of them")
    if every:
        return None
    if file is None:
        from veil.local.state import last_up

        here = last_up()
        if here is not None:
            return here.mesh
        if not DEFAULT_FILE.is_file():
            if not required:
                return None
            raise UserError(
                "no mesh here: `veil up` has not run in this directory and there is no "
                f"{DEFAULT_FILE}",
                hint="name the mesh with -f FILE, or act on every mesh `veil up` runs from "
                "this Veil home with --all")
        file = DEFAULT_FILE
    from veil.local.up import mesh_name
    from veil.manifest.load import load_document, read_manifest

    return mesh_name(load_document(str(file), read_manifest(file)))
