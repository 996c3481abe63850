"""`veil cas trust ADDR KEY`: record the key of the CAS at ADDR, so that mesh apply can check
the CAS it sends sessions to (for meshes that do not name a `cas_key` themselves)."""

from __future__ import annotations

import typer

from veil.cli._app import state

__all__ = ["register"]


def trust(
    addr: str = typer.Argument(..., help="CAS address HOST[:PORT] (port 8081 by default)."),
    key: str = typer.Argument(..., help="The CAS's public key, as `veil cas key` prints it."),
) -> None:
    """Trust KEY as the key of the CAS at ADDR (checked before every mesh apply)."""
    from veil.mesh.trust import trust as record

    where, fp = record(addr, key)
    state.console.print(f"trusting {fp} for the CAS at {where}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    from veil.cli.cas import cas_app

    cas_app.command("trust")(trust)
