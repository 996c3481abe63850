"""`veil env explain -f mesh.yaml SERVICE`: where each variable of a service comes from."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli._app import state
from veil.cli._mesh import descriptions_for, print_warnings
from veil.errors import UserError
from veil.manifest.load import load_mesh
from veil.resolve.env import resolve_mesh
from veil.resolve.explain import env_rows

__all__ = ["register"]

env_app = typer.Typer(help="Inspect the resolved environment of a mesh's services.",
                      no_args_is_help=True)


@env_app.command("explain")
def explain(
    service: str = typer.Argument(..., help="Name of a service of the mesh."),
    file: Path = typer.Option(..., "-f", "--file-name", "--filename", help="The mesh manifest."),
) -> None:
    """Print each variable of SERVICE: value (secrets masked), origin, and whether the program receives it."""  # noqa: E501 - one line: rich help keeps line breaks
    doc = load_mesh(file)
    print_warnings(doc.warnings)
    names = [s.name for s in doc.model.services]
    if service not in names:
        raise UserError(f"{file}: no service named {service!r}",
                        hint="services of this mesh: " + ", ".join(names))
    descriptions, origins = descriptions_for(doc)
    resolved = resolve_mesh(doc, descriptions, service_origins=origins)
    table = Table(title=f"environment of {service} ({file})")
    for col in ("name", "value", "origin", "program"):
        table.add_column(col, overflow="fold")
    for row in env_rows(resolved.services[service]):
        table.add_row(row.name, row.value, row.origin, "yes" if row.program else "no")
    state.console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")
