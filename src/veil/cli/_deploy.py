"""What `veil deploy ...` and `veil check predeploy` share: the GitOps option, the registry
client, and the pre-deploy report as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from veil.cli._app import state
from veil.errors import Problem, UserError

__all__ = ["BUILDS_DB", "GITOPS", "REPO_URL", "TEAM", "build_records", "open_repo",
           "print_problems", "print_report"]

GITOPS = typer.Option(None, "--gitops", envvar="VEIL_GITOPS",
                      help="The GitOps repository: a git working copy (env VEIL_GITOPS).")
REPO_URL = typer.Option(None, "--repo-url", envvar="VEIL_GITOPS_URL",
                        help="The URL Argo CD clones the GitOps repository from "
                        "(default: its remote's URL).")
BUILDS_DB = typer.Option(
    None, "--platform-db", envvar="VEIL_PLATFORM_DB",
    help="The platform's job store, for `build: ID` (default: the local `veil platform serve`'s "
    "SQLite file, when there is one).")
TEAM = typer.Option(None, "--team", help="The team, when several teams have an app of this name.")


def open_repo(path: Path | None) -> Any:
    from veil.deploy.gitops import GitOpsRepo

    if path is None:
        raise UserError("no GitOps repository named",
                        hint="pass --gitops DIR (a git working copy) or set VEIL_GITOPS")
    return GitOpsRepo(path)


def build_records(loaded: Any, db: str | None) -> Any:
    """The platform's build records, when the deployment names a build and a store is at hand."""
    if loaded.model.build is None:
        return None
    from veil.paths import home_dir

    if db is None:
        default = home_dir() / "platform" / "platform.db"
        if not default.is_file():
            return None
        db = f"sqlite:///{default}"
    from veil.platform.deployments import StoreRecords
    from veil.platform.store import JobStore, make_engine

    return StoreRecords(JobStore(make_engine(db)))


def print_problems(problems: list[Problem]) -> None:
    for p in problems:
        colour = "yellow" if p.severity == "warning" else "red"
        state.err.print(f"[{colour}]{p.render()}[/{colour}]", soft_wrap=True, highlight=False,
                        markup=True)


def print_report(report: Any, *, title: str, err: bool = False) -> None:
    """The image, the sidecars and the environment-by-phase table."""
    from veil.deploy.report import ENV_COLUMNS, env_rows

    console = state.err if err else state.console
    if report.image is not None:
        console.print(f"image    {report.image.reference} → pulls {report.image.pinned}",
                      soft_wrap=True, markup=False)
    for name, pinned in sorted(report.sidecars.items()):
        console.print(f"sidecar  {name} → pulls {pinned}", soft_wrap=True, markup=False)
    if report.role_arn:
        console.print(f"role     {report.role_arn}", soft_wrap=True, markup=False)
    rows = env_rows(report)
    if rows:
        table = Table(title=title)
        for col in ENV_COLUMNS:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
