"""What `veil up`, `veil ps` and `veil down` share: the table of services, the mesh of `-f`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from veil.local.up import ServiceStatus

__all__ = ["mesh_of", "service_table"]


def service_table(services: list[ServiceStatus], title: str | None = None) -> Table:
    table = Table(title=title)
    for col in ("service", "image digest", "state", "attested", "port", "health"):
        table.add_column(col, overflow="fold")
    for s in services:
        digest = s.image.partition("@")[2][:19] or s.image
        attested = {True: "yes", False: "no", None: "-"}[s.attested]
        table.add_row(s.service, digest, s.state, attested,
                      f"127.0.0.1:{s.port}" if s.port else "-", s.health)
    return table


def mesh_of(file: Path | None) -> str | None:
    """The name `veil up` gave the mesh of `file` (None: every mesh)."""
    if file is None:
        return None
    from veil.local.up import mesh_name
    from veil.manifest.load import load_document, read_manifest

    return mesh_name(load_document(str(file), read_manifest(file)))
