"""`veil session create|update|read|check|hash|history`: session documents on a CAS.

Every command that talks to CAS takes `--cas HOST:PORT` and `--cas-key KEY` (env fallbacks
VEIL_CAS_ADDR / VEIL_CAS_KEY, then the client config `veil cas init` saved) and `--namespace`
(env VEIL_NAMESPACE).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from veil.cli._app import state
from veil.errors import UserError

session_app = typer.Typer(help="Create, update and read CAS sessions.", no_args_is_help=True)

File = typer.Option(..., "--file", "-f", help="Session document, YAML or JSON ('-' for stdin).")
Cas = typer.Option(None, "--cas", help="CAS address HOST:PORT (env VEIL_CAS_ADDR).")
CasKey = typer.Option(
    None, "--cas-key", help="Pinned CAS public key, as `veil cas key` prints (env VEIL_CAS_KEY)."
)
Namespace = typer.Option(..., "--namespace", "-n", envvar="VEIL_NAMESPACE", help="CAS namespace.")


def _load(file: Path) -> Any:
    from veil.session.load import load_session

    if str(file) == "-":
        import sys

        return load_session(sys.stdin.read(), "<stdin>")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read {file}: {err.strerror}") from None
    return load_session(text, str(file))


def _client(cas: str | None, cas_key: str | None) -> Any:
    from veil.cas.client import CasClient, resolve_target

    addr, key = resolve_target(cas, cas_key)
    return CasClient(addr, key)


def _document(doc: Any) -> dict[str, Any]:
    # explicit values travel to CAS (over TLS); `canonical()` would blank them
    data: dict[str, Any] = doc.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


@session_app.command("create")
def create(
    file: Path = File,
    namespace: str = Namespace,
    cas: str | None = Cas,
    cas_key: str | None = CasKey,
) -> None:
    """Create a session (the document must not name a predecessor). Prints its hash.

    Example: veil session create -f session.yaml -n myns --cas 127.0.0.1:8081 --cas-key KEY
    """
    doc = _load(file)
    with _client(cas, cas_key) as client:
        out = client.create_session(namespace, _document(doc))
    state.info(f"created {namespace}/{out['name']} version {out['version']}")
    state.console.print(out["hash"])


@session_app.command("update")
def update(
    file: Path = File,
    namespace: str = Namespace,
    cas: str | None = Cas,
    cas_key: str | None = CasKey,
    predecessor: str | None = typer.Option(
        None, "--predecessor", help="Hash of the version this replaces (else the file's)."
    ),
    from_current: bool = typer.Option(
        False,
        "--from-current",
        help="Use the current version's hash as predecessor (still 409 if it changes meanwhile).",
    ),
) -> None:
    """Replace a session; the predecessor must be the current version's hash, else 409."""
    doc = _load(file)
    with _client(cas, cas_key) as client:
        if from_current:
            predecessor = client.read_session(namespace, doc.name)["hash"]
        data = _document(doc)
        if predecessor:
            data["predecessor"] = predecessor
        if not data.get("predecessor"):
            raise UserError(
                "an update needs a predecessor", hint="pass --predecessor HASH or --from-current"
            )
        out = client.update_session(namespace, data)
    state.info(f"updated {namespace}/{out['name']} to version {out['version']}")
    state.console.print(out["hash"])


@session_app.command("read")
def read(
    name: str, namespace: str = Namespace, cas: str | None = Cas, cas_key: str | None = CasKey
) -> None:
    """Print the current version (JSON). Secret values are never part of it."""
    with _client(cas, cas_key) as client:
        out = client.read_session(namespace, name)
    state.console.print_json(json.dumps(out, sort_keys=True))


@session_app.command("history")
def history(
    name: str, namespace: str = Namespace, cas: str | None = Cas, cas_key: str | None = CasKey
) -> None:
    """List every version: number, hash, predecessor, author, time."""
    with _client(cas, cas_key) as client:
        rows = client.history(namespace, name)
    for r in rows:
        state.console.print(
            f"{r['version']:>4}  {r['hash']}  prev={r['predecessor'] or '-':<64}  "
            f"{r['created']}  by {r['author'][:16]}",
            soft_wrap=True,
        )


@session_app.command("check")
def check(file: Path = File) -> None:
    """Validate a session document locally; every problem is listed with its line."""
    doc = _load(file)
    state.console.print(f"{file}: session {doc.name!r} is valid")


@session_app.command("hash")
def hash_(
    file: Path | None = typer.Option(None, "--file", "-f", help="Hash this document locally."),
    name: str | None = typer.Argument(None, help="Or: ask CAS for this session's current hash."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", envvar="VEIL_NAMESPACE"),
    cas: str | None = Cas,
    cas_key: str | None = CasKey,
) -> None:
    """Print a session's hash: of a file (-f), or of the current version on CAS (NAME)."""
    from veil.session.model import session_hash

    if file is not None:
        state.console.print(session_hash(_load(file)))
        return
    if not name or not namespace:
        raise UserError("give -f FILE, or NAME with --namespace")
    with _client(cas, cas_key) as client:
        state.console.print(client.read_session(namespace, name)["hash"])


def register(app: typer.Typer) -> None:
    app.add_typer(session_app, name="session")
