"""`veil deploy history APP`: the deployments of an app, newest first, from the GitOps git log."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state
from veil.cli._deploy import GITOPS, TEAM, open_repo

__all__ = ["register"]


def history(
    app: str = typer.Argument(..., help="The app's name."),
    gitops: Path | None = GITOPS,
    team: str | None = TEAM,
) -> None:
    """List the app's deployments, newest first: commit, date, image, change."""
    from veil.deploy.history import history as revisions

    # one line per deployment, never folded: images are long and scripts grep them
    for rev in revisions(open_repo(gitops), app, team):
        state.console.print(f"{rev.sha[:12]}  {rev.date}  {rev.image or '-'}  {rev.subject}",
                            soft_wrap=True, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    from veil.cli.deploy import deploy_app

    deploy_app.command("history", no_args_is_help=True)(history)
