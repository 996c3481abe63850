"""`veil check predeploy -f deployment.yaml [-o table|json]`: the pre-deploy checks, nothing
written. Exit code 2 when a check fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from veil.cli._app import state
from veil.cli._deploy import (
    BUILDS_DB,
    GITOPS,
    build_records,
    open_repo,
    print_problems,
    print_report,
)
from veil.errors import ManifestError, UserError

__all__ = ["register"]

check_app = typer.Typer(help="Checks that change nothing.", no_args_is_help=True)


@check_app.command("predeploy", no_args_is_help=True)
def predeploy(
    file: Path = typer.Option(..., "--file", "-f", help="The deployment (YAML)."),
    output: Literal["table", "json"] = typer.Option("table", "--output", "-o",
                                                    help="table or json."),
    gitops: Path | None = GITOPS,
    platform_db: str | None = BUILDS_DB,
) -> None:
    """Image pinned as pushed, environment by phase, sidecars pullable (and, with --gitops, the
    team and names)."""
    from veil.deploy.apply import check
    from veil.deploy.images import RegistryImages
    from veil.deploy.load import load_deployment
    from veil.deploy.report import report_json

    loaded = load_deployment(file)
    repo = open_repo(gitops) if gitops is not None else None
    with RegistryImages() as images:
        report = check(loaded, images, repo=repo, records=build_records(loaded, platform_db))
    if output == "json":
        state.console.print_json(json.dumps(report_json(report)))
        if report.errors:  # the report is on stdout; exit 2 with a one-line summary
            raise UserError(f"{len(report.errors)} pre-deploy check(s) failed for {file}")
        return
    print_report(report, title=f"environment of {loaded.model.app} by phase")
    if report.errors:
        raise ManifestError(report.problems, summary=f"{len(report.errors)} pre-deploy "
                            f"check(s) failed for {file}")
    print_problems(report.warnings)
    state.console.print(f"{file}: every pre-deploy check passed", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(check_app, name="check")
