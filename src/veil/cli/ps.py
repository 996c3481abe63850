"""`veil ps [-f mesh.yaml | --all]`: the services `veil up` runs — image digest, state, attested,
port, health. Without `-f`: the mesh of the last `veil up` in this directory, else of
`./mesh.yaml` (as docker compose acts on the project of the current directory)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

__all__ = ["register"]


def ps(
    file: Path | None = typer.Option(
        None, "-f", "--file-name", "--filename",
        help="The mesh (default: the last `veil up` here, else ./mesh.yaml)."),
    every: bool = typer.Option(False, "--all",
                               help="Every mesh `veil up` runs from this Veil home."),
) -> None:
    """List the services of the mesh `veil up` runs: state, attestation, port, health."""
    from veil.cli._local import mesh_of, service_table
    from veil.local.podman import PodmanRunner
    from veil.local.up import status

    runner = PodmanRunner()
    runner.check()
    services = status(runner, mesh_of(file, every))
    if not services:
        state.info("no services: `veil up -f mesh.yaml` starts a mesh")
        return
    state.console.print(service_table(services))
    for s in services:
        if s.message:
            state.console.print(f"{s.service}: {s.message}", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
