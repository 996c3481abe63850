"""`veil cas init|serve|key|audit verify`: run a Configuration and Attestation Service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from veil.cli._app import state
from veil.errors import UserError

if TYPE_CHECKING:
    from veil.cas.state import CasFiles

cas_app = typer.Typer(
    help="Run CAS, the Configuration and Attestation Service.", no_args_is_help=True
)
audit_app = typer.Typer(help="Check CAS's audit log.", no_args_is_help=True)
cas_app.add_typer(audit_app, name="audit")

StateDir = typer.Option(
    None,
    "--state-dir",
    envvar="VEIL_CAS_DIR",
    help="Where CAS keeps its keys and (by default) its SQLite database. Default: $VEIL_HOME/cas.",
)
Db = typer.Option(
    None,
    "--db",
    envvar="VEIL_CAS_DB",
    help="Database URL: sqlite:///PATH (default: STATE_DIR/cas.db) or postgresql://...",
)


def _files(state_dir: Path | None) -> CasFiles:
    from veil.cas.state import CasFiles, default_state_dir  # cryptography: load when used

    return CasFiles(state_dir or default_state_dir())


@cas_app.command("init")
def init(
    state_dir: Path | None = StateDir,
    host: list[str] = typer.Option(
        ["localhost", "127.0.0.1"], "--host", help="Names and addresses for the certificate."
    ),
    addr: str | None = typer.Option(
        None, "--addr", help="Also save HOST:PORT as the CAS this machine's `veil` talks to."
    ),
    force: bool = typer.Option(False, "--force", help="Make new keys even if some exist."),
) -> None:
    """Make the CAS key, certificate, client CA and master key; print the public key to pin."""
    from veil.cas.client import save_client_config
    from veil.cas.state import init_state

    files = init_state((state_dir or _files(None).root), host, force=force)
    key = files.public_key_b64()
    path = save_client_config(addr, key)
    state.info(f"CAS state in {files.root}; client config in {path}")
    state.console.print(key, soft_wrap=True)


@cas_app.command("key")
def key(state_dir: Path | None = StateDir) -> None:
    """Print the CAS public key (what a mesh names as `cas_key`)."""
    files = _files(state_dir)
    if not files.key.exists():
        raise UserError(f"no CAS key in {files.root}", hint="run `veil cas init`")
    state.console.print(files.public_key_b64(), soft_wrap=True)


@cas_app.command("serve")
def serve(
    state_dir: Path | None = StateDir,
    db: str | None = Db,
    listen: str = typer.Option("127.0.0.1:8081", "--listen", help="HOST:PORT to serve on."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn worker processes."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve CAS over TLS (FastAPI on uvicorn) until interrupted."""
    from veil.cas.server import serve as run

    files = _files(state_dir)
    if not files.exists():
        raise UserError(f"no CAS state in {files.root}", hint="run `veil cas init` first")
    state.info(f"CAS serving on https://{listen} (key {files.public_key_b64()[:24]}...)")
    run(files, db, listen, workers=workers, log_level=log_level)


@audit_app.command("verify")
def audit_verify(state_dir: Path | None = StateDir, db: str | None = Db) -> None:
    """Check the audit chain: any changed, inserted or removed entry is reported."""
    from veil.cas.audit import verify
    from veil.cas.state import load_keyring
    from veil.cas.store import make_engine
    from veil.errors import OperationalError

    files = _files(state_dir)
    keys = load_keyring(files)
    engine = make_engine(db or files.default_db_url)
    report = verify(engine, keys.audit)
    engine.dispose()
    if not report.ok:
        for p in report.problems:
            state.err.print(f"  {p}", markup=False)
        n = len(report.problems)
        raise OperationalError(
            f"audit log is NOT intact: {n} problem(s) in {report.entries} entries"
        )
    state.console.print(f"audit log intact: {report.entries} entries")


def register(app: typer.Typer) -> None:
    app.add_typer(cas_app, name="cas")
