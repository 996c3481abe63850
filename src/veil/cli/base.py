"""`veil base create python|java`: build and push a base image without internet access."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

__all__ = ["register"]

base_app = typer.Typer(help="Base images for Veil services.", no_args_is_help=True)


@base_app.command("create")
def create(
    kind: str = typer.Argument(..., help="What to build: `python`, or `java` (a JRE)."),
    to: str = typer.Option(None, "--to", help="Image reference to push to."),
    cache: Path = typer.Option(
        None, "--cache", help="Keep the bootstrapped root filesystem here and reuse it."
    ),
    mirror: str = typer.Option(None, "--mirror", help="Debian mirror for debootstrap."),
    push: bool = typer.Option(True, "--push/--no-push", help="Push to the registry."),
) -> None:
    """Make a Debian bookworm (minbase) image with python3 and pip (java: python3 for the
    launcher and Debian's JRE 17), and push it."""
    from veil.cli._app import abort
    from veil.image.base import BASES, DEFAULT_MIRROR, create_base
    from veil.image.reference import parse_reference

    if kind not in BASES:
        abort(f"unknown base kind {kind!r}", hint="allowed: " + ", ".join(BASES))
    ref = to or BASES[kind].default_ref
    parse_reference(ref, field="--to")
    with state.status(f"creating {ref}") as status:
        digest = create_base(
            kind, ref, cache=cache, mirror=mirror or DEFAULT_MIRROR, push=push,
            progress=lambda m: status.update(m),
        )
    state.console.print(f"{ref}@{digest}" if digest else f"{ref} (local)")


def register(app: typer.Typer) -> None:
    app.add_typer(base_app, name="base")
