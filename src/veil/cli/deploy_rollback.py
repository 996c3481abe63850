"""`veil deploy rollback APP`: back to the previous image, in one commit."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state
from veil.cli._deploy import GITOPS, TEAM, open_repo

__all__ = ["register"]


def rollback(
    app: str = typer.Argument(..., help="The app's name."),
    gitops: Path | None = GITOPS,
    team: str | None = TEAM,
) -> None:
    """Restore the app's Application as it was with its previous image (one commit)."""
    from veil.deploy.history import rollback as run
    from veil.deploy.images import RegistryImages

    with RegistryImages() as images:
        commit = run(open_repo(gitops), app, images, team)
    where = f", pushed to {commit.pushed_to}" if commit.pushed_to else ""
    state.console.print(f"{commit.sha[:12]} {commit.message.splitlines()[0]}{where}",
                        soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    from veil.cli.deploy import deploy_app

    deploy_app.command("rollback", no_args_is_help=True)(rollback)
