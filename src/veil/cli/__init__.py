"""The `veil` command (also installed as `sconectl`).

Every module in this package that defines `register(app)` adds its command(s); one command per
module. `main` turns Veil's errors into a message and an exit code: 2 for bad input, 1 for an
operational failure; tracebacks only with -vv. Started as `sconectl`, the program calls itself
that in usage lines and hints.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from veil.cli._app import add_everywhere, app, program_name, state
from veil.cli._help import plain_metavars
from veil.errors import ManifestError, VeilError

try:  # newer typer vendors click and raises the vendored copy's exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - typer that uses the click package
    from click import exceptions as click_errors  # type: ignore[no-redef]

__all__ = ["app", "main"]


def _load_commands() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_load_commands()


def _report(err: VeilError) -> None:
    console = state.err
    named = state.named
    if isinstance(err, ManifestError):
        for w in err.warnings:
            console.print(named(w.render()), style="yellow", soft_wrap=True, markup=False)
        console.print(f"[bold red]error:[/bold red] {named(err.message)}", soft_wrap=True)
        for p in err.problems:
            console.print("  " + named(p.render()), soft_wrap=True, markup=False)
    else:
        console.print("[bold red]error:[/bold red] ", end="")
        console.print(named(err.render()), soft_wrap=True, markup=False)


def _usage_error(err: click_errors.ClickException, args: list[str]) -> None:
    err.show()
    if "'-h' requires an argument" in err.format_message() and args[:1] == ["apply"]:
        # sconectl's `apply -h DIR` is --helm-template; a user who wanted help gets told so
        state.err.print(f"(in `{state.prog} apply`, -h is --helm-template DIR, as in sconectl; "
                        "help is --help)", soft_wrap=True, markup=False)


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command line; `prog` (default: from how the program was started) is the name
    it uses for itself."""
    args = sys.argv[1:] if argv is None else argv
    state.reset(prog or program_name(sys.argv[0] if argv is None else "veil"))
    command = typer.main.get_command(app)
    add_everywhere(command)
    plain_metavars(command)
    try:
        command.main(args=args, prog_name=state.prog, standalone_mode=False)
    except VeilError as err:
        if state.verbose >= 2:
            raise
        _report(err)
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        state.err.print("aborted")
        return 130
    except click_errors.ClickException as err:
        # unknown option, missing argument, a value not among the choices: bad input
        _usage_error(err, args)
        return 2
    except typer.Exit as err:
        return err.exit_code
    except OSError as err:
        # a file system refusal nobody anticipated (read-only, full disk, a file where a
        # folder should be): say which file and why, not where in Veil it happened
        if state.verbose >= 2:
            raise
        where = f" {err.filename}" if err.filename else ""
        state.err.print(f"[bold red]error:[/bold red] cannot use{where}: "
                        f"{err.strerror or err}", soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
