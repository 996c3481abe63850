"""`veil logs [-f] SERVICE`: the output of one service of a mesh `veil up` runs."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

__all__ = ["register"]


def logs(
    service: str = typer.Argument(..., help="The service's name in the mesh."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new output."),
    file: Path | None = typer.Option(
        None, "--mesh", help="The mesh manifest (default: the last `veil up` here, else "
        "./mesh.yaml, else any mesh with a service of that name)."),
) -> None:
    """Print (or follow) the output of one service of the mesh `veil up` runs."""
    from veil.cli._local import mesh_of
    from veil.errors import UserError
    from veil.local.podman import PodmanRunner

    runner = PodmanRunner()
    runner.check()
    found = [c for c in runner.containers(mesh_of(file, required=False)) if c.service == service]
    if not found:
        raise UserError(f"no service {service!r} is running under `veil up`",
                        hint="`veil ps` lists the services")
    if len(found) > 1:
        raise UserError(f"several meshes have a service {service!r}: "
                        + ", ".join(c.mesh for c in found), hint="name one with --mesh FILE")
    text = runner.logs(found[0].name, follow=follow)
    if text:
        state.console.out(text, end="")


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
