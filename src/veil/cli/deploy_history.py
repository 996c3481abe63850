"""`veil deploy history APP`: the deployments of an app, newest first, from the GitOps git log."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli._app import state
from veil.cli._deploy import GITOPS, TEAM, open_repo

__all__ = ["register"]


def history(
    app: str = typer.Argument(..., help="The app's name."),
    gitops: Path | None = GITOPS,
    team: str | None = TEAM,
) -> None:
    """List the app's deployments: commit, date, image."""
    from veil.deploy.history import history as revisions

    table = Table(title=f"deployments of {app}")
    for col in ("commit", "date", "image", "change"):
        table.add_column(col, overflow="fold")
    for rev in revisions(open_repo(gitops), app, team):
        table.add_row(rev.sha[:12], rev.date, rev.image or "-", rev.subject)
    state.console.print(table)


def register(app: typer.Typer) -> None:
    from veil.cli.deploy import deploy_app

    deploy_app.command("history", no_args_is_help=True)(history)
