"""`veil down [-f mesh.yaml | --all] [--volumes]`: stop what `veil up` runs. Without `-f`: the
mesh of the last `veil up` in this directory, else of `./mesh.yaml`."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

__all__ = ["register"]


def down(
    file: Path | None = typer.Option(
        None, "-f", "--file-name", "--filename",
        help="The mesh (default: the last `veil up` here, else ./mesh.yaml)."),
    every: bool = typer.Option(False, "--all",
                               help="Every mesh `veil up` runs from this Veil home."),
    volumes: bool = typer.Option(False, "--volumes",
                                 help="Also delete the local CAS's keys and database."),
) -> None:
    """Stop the mesh `veil up` runs: containers and network removed."""
    from veil.cli._local import mesh_of
    from veil.local.cas import cas_dir
    from veil.local.podman import PodmanRunner
    from veil.local.up import down as run_down

    runner = PodmanRunner()
    runner.check()
    removed = run_down(runner, mesh_of(file, every), volumes=volumes)
    if not volumes:
        kept = "; the local CAS's state is kept (--volumes deletes it)"
    elif cas_dir().exists():  # another mesh of this Veil home still uses the local CAS
        kept = "; the local CAS's state is kept: another mesh still runs (`veil ps --all`)"
    else:
        kept = "; the local CAS's state deleted"
    state.info(f"removed {len(removed)} container(s)"
               f"{': ' + ', '.join(removed) if removed else ''}{kept}")


def register(app: typer.Typer) -> None:
    app.command("down")(down)
