"""`veil down [-f mesh.yaml] [--volumes]`: stop what `veil up` runs."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

__all__ = ["register"]


def down(
    file: Path | None = typer.Option(None, "-f", "--file-name", "--filename",
                                     help="Only this mesh (default: every mesh)."),
    volumes: bool = typer.Option(False, "--volumes",
                                 help="Also delete the local CAS's keys and database."),
) -> None:
    """Stop the mesh `veil up` runs: containers and network removed."""
    from veil.cli._local import mesh_of
    from veil.local.podman import PodmanRunner
    from veil.local.up import down as run_down

    runner = PodmanRunner()
    runner.check()
    removed = run_down(runner, mesh_of(file), volumes=volumes)
    state.info(f"removed {len(removed)} container(s){': ' + ', '.join(removed) if removed else ''}"
               + ("; the local CAS's state deleted" if volumes else
                  "; the local CAS's state is kept (--volumes deletes it)"))


def register(app: typer.Typer) -> None:
    app.command("down")(down)
