"""The one application object every CLI command shares.

Options sconectl users put anywhere on the line (`-v` repeated, `-q`) are options of the root
AND of every command (`add_everywhere`), so `sconectl apply -f s.yaml -vvvvvvvv` and
`sconectl -vvvv apply -f s.yaml` both count. The program names itself as it was invoked:
run as `sconectl`, usage lines and hints say `sconectl`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import typer
from rich.console import Console

from veil import __version__
from veil.errors import UserError

__all__ = ["State", "abort", "add_everywhere", "app", "program_name", "state"]

PROGRAMS = ("veil", "sconectl")
# `veil <command>` in a message or hint, as a user would type it
_COMMAND_RE = re.compile(
    r"(?<![\w./-])veil(?= (?:apply|base|cas|env|inspect|schema|session|verify|wrap|up|"
    r"platform|deploy|argocd)\b)")


def program_name(argv0: str) -> str:
    """`sconectl` when started through that name (or a path/alias ending in it), else `veil`."""
    base = os.path.basename(argv0)
    return "sconectl" if base.startswith("sconectl") else "veil"


@dataclass
class State:
    verbose: int = 0
    quiet: bool = False
    prog: str = "veil"
    console: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def reset(self, prog: str) -> None:
        self.verbose, self.quiet, self.prog = 0, False, prog

    def named(self, text: str) -> str:
        """`text` with `veil <command>` spelled the way the user invoked the program."""
        return text if self.prog == "veil" else _COMMAND_RE.sub(self.prog, text)

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.err.print(self.named(msg))

    def warn(self, msg: str) -> None:
        """A warning is shown even with -q: it says something the user must know."""
        self.err.print(f"[yellow]warning:[/yellow] {self.named(msg)}", soft_wrap=True,
                       markup=True)

    def debug(self, msg: str) -> None:
        if self.verbose:
            self.err.print(f"[dim]{msg}[/dim]")

    @contextlib.contextmanager
    def status(self, msg: str) -> Iterator[Any]:
        """A spinner on the terminal (sconectl's; `-q` turns it off, as `--quiet` does there)."""
        if self.quiet:
            yield _NoStatus()
            return
        with self.err.status(msg) as status:
            yield status


class _NoStatus:
    def update(self, *_a: Any, **_k: Any) -> None:
        return None


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
        typer.echo(f"{state.prog} {__version__}" if state.prog == "veil"
                   else f"{state.prog} {__version__} (veil {__version__})")
        raise typer.Exit()


def _count_verbose(_ctx: Any, _param: Any, value: int) -> int:
    state.verbose += value or 0
    return value


def _set_quiet(_ctx: Any, _param: Any, value: bool) -> bool:
    if value:
        state.quiet = True
    return value


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, callback=_count_verbose,
        help="More output; repeat it (-vv) to see tracebacks. Allowed anywhere on the line."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", "--quite", callback=_set_quiet,
                               help="No progress spinner or progress lines."),
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True,
        help="Print the version and exit."
    ),
    cas_config: str | None = typer.Option(
        None, "--cas-config", "--cas_config", metavar="DIR",
        help="sconectl's CAS config directory: refused (Veil keeps the CAS keys it trusts "
        "itself; see docs/sconectl.md)."),
) -> None:
    if cas_config is not None:
        raise UserError(state.named(
            f"--cas-config {cas_config}: Veil does not read sconectl's CAS config directory; "
            "it pins each CAS by its key (cas_key in the mesh, or the key `veil cas init` "
            "recorded)"))


def add_everywhere(command: Any) -> None:
    """Give every subcommand the root's `-v/--verbose` (counting) and `-q/--quiet`.

    click parses an option only at the level it belongs to; sconectl's scripts put `-vvvvvvvv`
    after the subcommand's options. The copies are not passed to the command functions: their
    callbacks update `state`.
    """
    shared = [p for p in command.params if {"-v", "-q"} & set(getattr(p, "opts", []))]
    _add(command, shared)


def _add(command: Any, shared: list[Any]) -> None:
    for sub in (getattr(command, "commands", None) or {}).values():
        if getattr(sub, "commands", None):
            _add(sub, shared)
        taken = {o for p in sub.params for o in getattr(p, "opts", [])}
        for param in shared:
            if taken & set(param.opts):
                continue
            mine = copy.copy(param)
            mine.expose_value = False
            sub.params.append(mine)


def abort(message: str, *, hint: str | None = None) -> NoReturn:
    """Stop with a user error (exit code 2)."""
    raise UserError(message, hint=hint)
