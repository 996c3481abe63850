"""The one application object every CLI command shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

import typer
from rich.console import Console

from veil import __version__
from veil.errors import UserError

__all__ = ["State", "abort", "app", "state"]


@dataclass
class State:
    verbose: int = 0
    console: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def info(self, msg: str) -> None:
        self.err.print(msg)

    def debug(self, msg: str) -> None:
        if self.verbose:
            self.err.print(f"[dim]{msg}[/dim]")


state = State()

app = typer.Typer(
    name="veil",
    help=(
        "Veil takes a plain Python program to a confidential, attested service. "
        "`sconectl` is the same program."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"veil {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True,
        help="More output; repeat it (-vv) to see tracebacks."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    state.verbose = verbose


def abort(message: str, *, hint: str | None = None) -> NoReturn:
    """Stop with a user error (exit code 2)."""
    raise UserError(message, hint=hint)
