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
PinFile = typer.Option(
    None,
    "--pkcs11-pin-file",
    envvar="VEIL_CAS_PKCS11_PIN_FILE",
    help="File holding the token's user PIN (or set VEIL_CAS_PKCS11_PIN). Never give the PIN "
    "itself as an argument.",
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
    pkcs11_module: Path | None = typer.Option(
        None,
        "--pkcs11-module",
        help="PKCS#11 library (e.g. libsofthsm2.so): seal the master key in a token instead "
        "of keeping it in a file.",
    ),
    pkcs11_token: str | None = typer.Option(
        None, "--pkcs11-token", help="Label of the PKCS#11 token (with --pkcs11-module)."
    ),
    pkcs11_key_label: str = typer.Option(
        "veil-cas-master", "--pkcs11-key-label", help="Label of the AES key in the token."
    ),
    pin_file: Path | None = PinFile,
) -> None:
    """Make the CAS key, certificate, client CA and master key; print the public key to pin."""
    from veil.cas.client import save_client_config
    from veil.cas.keystore import Pkcs11Config, read_pin
    from veil.cas.state import init_state

    config = None
    pin = None
    if (pkcs11_module is None) != (pkcs11_token is None):
        raise UserError("--pkcs11-module and --pkcs11-token go together")
    if pkcs11_module is not None and pkcs11_token is not None:
        if not pkcs11_module.is_file():
            raise UserError(f"--pkcs11-module {pkcs11_module}: no such file")
        config = Pkcs11Config(
            module=str(pkcs11_module.resolve()),
            token=pkcs11_token,
            key_label=pkcs11_key_label,
            pin_file=str(pin_file.resolve()) if pin_file is not None else None,
        )
        pin = read_pin(config, pin_file)
    root = state_dir or _files(None).root
    files = init_state(root, host, force=force, pkcs11=config, pin=pin)
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
    listen: list[str] = typer.Option(
        ["127.0.0.1:8081"], "--listen",
        help="HOST:PORT to serve on; repeat it to serve on several addresses (one worker)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn worker processes."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    pin_file: Path | None = PinFile,
) -> None:
    """Serve CAS over TLS (FastAPI on uvicorn) until interrupted."""
    import os

    from veil.cas.keystore import PIN_FILE_ENV
    from veil.cas.server import serve as run
    from veil.cas.state import load_keyring

    files = _files(state_dir)
    if not files.exists():
        raise UserError(f"no CAS state in {files.root}", hint="run `veil cas init` first")
    if files.uses_pkcs11():
        if pin_file is not None:  # the workers read the PIN file's path, never the PIN
            os.environ[PIN_FILE_ENV] = str(pin_file.resolve())
        # open the token here: a wrong PIN or a missing token is one clear error, not a
        # traceback in every worker
        load_keyring(files, pin_file)
    where = ", ".join(f"https://{a}" for a in listen)
    state.info(f"CAS serving on {where} (key {files.public_key_b64()[:24]}...)")
    run(files, db, listen, workers=workers, log_level=log_level)


@audit_app.command("verify")
def audit_verify(state_dir: Path | None = StateDir, db: str | None = Db) -> None:
    """Check the audit chain and every authenticated row: any changed, inserted, removed or
    rolled-back entry or row is reported."""
    from veil.cas.audit import verify
    from veil.cas.integrity import Counter, from_keys
    from veil.cas.state import counter_store, load_keyring
    from veil.cas.store import make_engine, make_reader
    from veil.errors import OperationalError

    files = _files(state_dir)
    keys = load_keyring(files)
    url = db or files.default_db_url
    engine = make_engine(url)
    report = verify(make_reader(url, engine), from_keys(keys, Counter(counter_store(files, keys))))
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
