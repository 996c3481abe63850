"""`veil up -f mesh.yaml`: run a whole mesh on this machine (sessions into CAS, every service a
podman container behind its launcher), health-gated, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from veil.cli._app import state

__all__ = ["register"]


def up(
    file: Path = typer.Option(Path("mesh.yaml"), "-f", "--file-name", "--filename",
                              help="The mesh manifest."),
    mode: Literal["debug", "production"] = typer.Option(
        "production", "--mode", help="debug or production."),
    cas: str | None = typer.Option(
        None, "--cas", help="HOST:PORT of the CAS to use (default: the mesh's, else a local "
        "one that `veil up` starts)."),
    target: Path = typer.Option(Path("target"), "-t", "--target",
                                help="Directory for what mesh apply writes."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds for every service to be up."),
) -> None:
    """Run a mesh on this machine: sessions into CAS, every service a podman container."""
    from veil.cli._local import service_table
    from veil.errors import OperationalError, UserError
    from veil.local.podman import PodmanRunner
    from veil.local.state import record_up
    from veil.local.up import UpOptions, mesh_name
    from veil.local.up import up as run_up
    from veil.manifest.load import load_document, read_manifest

    doc = load_document(str(file), read_manifest(file))
    if doc.kind != "mesh":
        raise UserError(f"{file} is a {doc.kind} manifest; `veil up` runs a mesh",
                        hint=f"build the service with `veil apply -f {file}` and name its image "
                        "in a mesh")
    options = UpOptions(mode=mode, cas=cas, target=target, timeout=timeout)
    # `veil ps`, `logs` and `down` without -f act on this mesh when run in this directory
    record_up(file, mesh_name(doc))
    with state.status(f"veil up {file}") as status:
        def progress(message: str) -> None:
            status.update(message)
            if not message.startswith("waiting for"):
                state.info(message)

        result = run_up(doc, options, PodmanRunner(), progress)
    state.console.print(service_table(result.services, title=f"mesh {result.namespace}"))
    if result.failed:
        lines = [f"service {s.service}: {s.message}" for s in result.failed]
        raise OperationalError(
            f"{len(result.failed)} of {len(result.services)} service(s) did not come up:\n  "
            + "\n  ".join(lines),
            hint="`veil logs SERVICE` shows a service's output, `veil ps` the state; `veil down` "
            "removes the mesh")
    kept = f", {len(result.kept)} unchanged" if result.kept else ""
    state.info(f"mesh {result.namespace} is up: {len(result.services)} service(s){kept}; "
               f"CAS {result.cas_addr}{' (local)' if result.local_cas else ''}")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
