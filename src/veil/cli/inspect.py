"""`veil inspect IMAGE`: print the service description an image carries."""

from __future__ import annotations

import json

import typer

from veil.cli._app import state

__all__ = ["register"]


def inspect(
    image: str = typer.Argument(..., help="Image reference, e.g. 127.0.0.1:5000/demo/hello:1."),
    local: bool = typer.Option(
        False, "--local", help="Only look in the local index (no registry access)."
    ),
) -> None:
    """Print the service description of IMAGE as JSON (registry label, else the local index)."""
    from veil.image.describe import description_of

    desc = description_of(image, local_only=local)
    state.console.print_json(json.dumps(json.loads(desc.to_json()), sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
