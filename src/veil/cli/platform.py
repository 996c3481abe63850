"""`veil platform serve`: the build service (`POST /containerbuild`, the build queue, the page)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._app import state

platform_app = typer.Typer(
    help="The platform: container builds for teams (containerbuild), a page to watch them.",
    no_args_is_help=True,
)


@platform_app.command("serve")
def serve(
    db: str | None = typer.Option(
        None, "--db", envvar="VEIL_PLATFORM_DB",
        help="Job store URL: sqlite:///PATH (default: STATE_DIR/platform.db) or "
        "postgresql://USER@HOST:PORT/DB (several platform processes share its queue)."),
    workers: int = typer.Option(2, "--workers", min=1, max=32,
                                help="Builds this process runs at once."),
    listen: str = typer.Option("127.0.0.1:8090", "--listen", help="HOST:PORT to serve on."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", envvar="VEIL_PLATFORM_DIR",
        help="Work folders, the wrapper repository, caches and the key sealing secret build "
        "args. Default: $VEIL_HOME/platform."),
    build_timeout: float = typer.Option(3600, "--build-timeout", min=1,
                                        help="Seconds a build may run before it is stopped."),
    retention: float = typer.Option(
        86400, "--retain-work-dirs", min=0,
        help="Seconds a finished build's work folder is kept (0: removed at once)."),
    lease: float = typer.Option(
        30, "--lease", min=1,
        help="A running build whose worker has not been heard of this long is marked failed."),
    python_version: str = typer.Option("3.11", "--python-version",
                                       help="The base images' Python, for downloading wheels."),
    public_url: str | None = typer.Option(
        None, "--public-url", help="URL builders reach this service at (for the wrapper "
        "repository). Default: http://LISTEN."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    gitops: Path | None = typer.Option(
        None, "--gitops", envvar="VEIL_GITOPS",
        help="A GitOps repository (git working copy): serve POST /deployments into it."),
    gitops_url: str | None = typer.Option(
        None, "--gitops-url", envvar="VEIL_GITOPS_URL",
        help="The URL Argo CD clones the GitOps repository from (default: its remote's)."),
    deployments_dir: Path | None = typer.Option(
        None, "--deployments-dir",
        help="Where paths in deployments (code, chart.path) resolve; they may not leave it. "
        "Default: STATE_DIR/deployments."),
) -> None:
    """Serve the platform's API and page, and run builds, until interrupted."""
    from veil.paths import home_dir
    from veil.platform.server import ServeOptions, parse_listen
    from veil.platform.server import serve as run

    parse_listen(listen)
    opts = ServeOptions(
        state_dir=(state_dir or home_dir() / "platform").resolve(), db_url=db, workers=workers,
        listen=listen, build_timeout=build_timeout, retention=retention, lease=lease,
        python_version=python_version, public_url=public_url, log_level=log_level,
        gitops=gitops.resolve() if gitops else None, gitops_url=gitops_url,
        deployments_dir=deployments_dir.resolve() if deployments_dir else None)
    shown = "SQLite in the state folder"
    if db:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            shown = make_url(db).render_as_string(hide_password=True)  # never the password
        except ArgumentError:
            shown = "(unparsable URL)"
    state.info(f"platform on http://{listen} (job store: {shown})")
    run(opts)


def register(app: typer.Typer) -> None:
    app.add_typer(platform_app, name="platform")
