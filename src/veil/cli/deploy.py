"""`veil deploy -f deployment.yaml`: check, then write the Argo CD applications as one commit.

The group also holds `veil deploy history APP` and `veil deploy rollback APP` (their own
modules)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state
from veil.cli._deploy import (
    BUILDS_DB,
    GITOPS,
    REPO_URL,
    build_records,
    open_repo,
    print_problems,
    print_report,
)
from veil.errors import UserError

__all__ = ["deploy_app", "register"]

deploy_app = typer.Typer(
    help="Deploy through Argo CD: the deployment, alias and team applications in a GitOps "
    "repository, after the pre-deploy checks.",
    invoke_without_command=True,
)


@deploy_app.callback()
def deploy(
    ctx: typer.Context,
    file: Path | None = typer.Option(None, "--file", "-f", help="The deployment (YAML)."),
    gitops: Path | None = GITOPS,
    repo_url: str | None = REPO_URL,
    platform_db: str | None = BUILDS_DB,
) -> None:
    """Check the deployment, then commit (and push) its Argo CD applications."""
    if ctx.invoked_subcommand is not None:
        return
    if file is None:
        raise UserError("name the deployment to apply", hint="veil deploy -f deployment.yaml")
    from veil.deploy.apply import PredeployFailed
    from veil.deploy.apply import deploy as run
    from veil.deploy.images import RegistryImages
    from veil.deploy.load import load_deployment

    loaded = load_deployment(file)
    repo = open_repo(gitops)
    with RegistryImages() as images:
        try:
            done = run(loaded, repo, images, repo_url=repo_url,
                       records=build_records(loaded, platform_db))
        except PredeployFailed as err:
            print_report(err.report, title=f"environment of {loaded.model.app}", err=True)
            raise
    print_problems(done.report.warnings)
    if done.commit is None:
        state.console.print(f"{done.application}: unchanged (the repository already holds "
                            "this deployment)", soft_wrap=True, markup=False)
        return
    where = f", pushed to {done.commit.pushed_to}" if done.commit.pushed_to else ""
    state.console.print(f"{done.commit.sha[:12]} {done.commit.message.splitlines()[0]} "
                        f"({len(done.commit.files)} files{where})", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
