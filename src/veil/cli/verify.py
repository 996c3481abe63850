"""`veil verify IMAGE`: check an image's signature in its registry."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

__all__ = ["register"]


def verify(
    image: str = typer.Argument(..., help="Image reference (tag or digest)."),
    key: Path = typer.Option(
        None, "--key", help="Public key (PEM); default: your own signing key."
    ),
) -> None:
    """Verify that IMAGE, as the registry holds it now, was signed with the key."""
    from veil.image.reference import parse_reference
    from veil.image.signing import load_public_key, verify_image

    parse_reference(image)  # a malformed reference is the first thing to say, before the key
    digest = verify_image(image, load_public_key(key))
    state.console.print(f"verified {image} ({digest})")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
