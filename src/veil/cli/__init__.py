"""The `veil` command (also installed as `sconectl`).

Every module in this package that defines `register(app)` adds its command(s); one command per
module, named like the command (`veil up` is `up.py`). `main` turns Veil's errors into a message
and an exit code: 2 for bad input, 1 for an operational failure; tracebacks only with -vv.
Started as `sconectl`, the program calls itself that in usage lines and hints.

Start-up is kept short: `veil --version` and `veil --help` answer from this module alone (see
`_root_help`), and a command imports only its own module — typer, rich, pydantic and the rest
load when a command runs, not before.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["COMMANDS", "app", "main"]

# The commands as `veil --help` lists them: name → the help line of the command. A module that
# registers a command not listed here is still found and run, and listed with the first
# sentence of its module docstring; tests/cli/test_startup.py keeps this table equal to what
# the modules register.
COMMANDS: dict[str, str] = {
    "apply": "Apply a service manifest or a mesh (dispatching on `kind`).",
    "base": "Base images for Veil services.",
    "cas": "Run CAS, the Configuration and Attestation Service.",
    "check": "Checks that change nothing.",
    "deploy": "Deploy through Argo CD: the deployment, alias and team applications in a GitOps "
              "repository, after the pre-deploy checks.",
    "down": "Stop the mesh `veil up` runs: containers and network removed.",
    "env": "Inspect the resolved environment of a mesh's services.",
    "inspect": "Print the service description of IMAGE as JSON (registry label, else the local "
               "index).",
    "logs": "Print (or follow) the output of one service of the mesh `veil up` runs.",
    "platform": "The platform: container builds for teams (containerbuild), a page to watch "
                "them.",
    "ps": "List the services of the mesh `veil up` runs: state, attestation, port, health.",
    "schema": "Print the JSON Schema of a manifest kind.",
    "session": "Create, update and read CAS sessions.",
    "up": "Run a mesh on this machine: sessions into CAS, every service a podman container.",
    "verify": "Verify that IMAGE, as the registry holds it now, was signed with the key.",
    "wrap": "Turn a bare Python repository (module:function or module:Class) into a Flask or a "
            "Kafka application: a build context plus a service manifest for `veil apply`.",
}

ROOT_HELP = "Veil takes a plain Python program to a confidential, attested service. " \
            "`sconectl` is the same program."
# the root options as `_app._root` declares them: (flags, help); tests/cli/test_startup.py
# keeps the two equal
ROOT_OPTIONS = [
    ("-v, --verbose",
     "More output; repeat it (-vv) to see tracebacks. Allowed anywhere on the line."),
    ("-q, --quiet", "No progress spinner or progress lines."),
    ("-V, --version", "Print the version and exit."),
    ("--cas-config DIR",
     "sconectl's CAS config directory: refused (Veil keeps the CAS keys it trusts itself; see "
     "docs/sconectl.md)."),
    ("-h, --help", "Show this message and exit."),
]


def _program(argv0: str) -> str:
    """As `_app.program_name` (not imported here: it loads typer)."""
    import os

    return "sconectl" if os.path.basename(argv0).startswith("sconectl") else "veil"


def _modules() -> list[str]:
    """Names of the modules that may register commands (no import)."""
    from pathlib import Path

    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def _command_modules() -> list[str]:
    """The modules of root commands; `cas_trust.py` adds `trust` to the group of `cas.py`."""
    names = _modules()
    return [n for n in names if not any(n.startswith(g + "_") for g in names)]


_loaded: set[str] = set()


def _load_commands(app: Any, only: str | None = None) -> None:
    """Register the command of module `only` (with the subcommands its `only_*` modules add),
    or of every module; each module once."""
    import importlib

    names = _modules()
    if only:
        names = [n for n in names if n == only or n.startswith(only + "_")]
    for name in names:
        if name in _loaded:
            continue
        _loaded.add(name)
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


def __getattr__(name: str) -> Any:
    if name == "app":  # the typer application with every command registered
        from veil.cli._app import app

        _load_commands(app)
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _summary(module: str) -> str:
    """The first sentence of a module's docstring, without its "`veil x ...`: " prefix."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8")
    m = re.match(r'\s*(?:"""|\'\'\')(.*?)(?:\.\s|"""|\'\'\'|\n\n)', text, re.S)
    line = " ".join((m.group(1) if m else "").split())
    line = re.sub(r"^`[^`]*`\s*:\s*", "", line)
    return line[:1].upper() + line[1:] + ("." if line and not line.endswith(".") else "")


def _root_help(prog: str) -> str:
    import textwrap

    lines = [f"Usage: {prog} [OPTIONS] COMMAND [ARGS]...", ""]
    lines += textwrap.wrap(ROOT_HELP, 76, initial_indent="  ", subsequent_indent="  ")
    lines += ["", "Options:"]
    width = max(len(f) for f, _ in ROOT_OPTIONS) + 2
    for flags, text in ROOT_OPTIONS:
        wrapped = textwrap.wrap(text, 78 - width - 2)
        lines.append(f"  {flags.ljust(width)}{wrapped[0]}")
        lines += [" " * (width + 2) + w for w in wrapped[1:]]
    lines += ["", "Commands:"]
    names = [n.replace("_", "-") for n in _command_modules()]
    width = max(len(n) for n in names) + 2
    for n in names:
        text = COMMANDS.get(n) or _summary(n.replace("-", "_"))
        wrapped = textwrap.wrap(text, 78 - width - 2) or [""]
        lines.append(f"  {n.ljust(width)}{wrapped[0]}".rstrip())
        lines += [" " * (width + 2) + w for w in wrapped[1:]]
    return "\n".join(lines) + "\n"


def _flag(arg: str) -> bool:
    """-v (repeated: -vvvv), --verbose, -q, --quiet: root options that take no value."""
    import re

    return arg in ("--verbose", "--quiet", "--quite") or re.fullmatch(r"-[vq]+", arg) is not None


def _fast(args: list[str], prog: str) -> int | None:
    """Answer `--version` and the root help without loading typer; None for everything else."""
    rest = [a for a in args if not _flag(a)]
    if rest and rest[0] in ("--version", "-V"):
        from veil import __version__

        sys.stdout.write(f"veil {__version__}\n" if prog == "veil"
                         else f"{prog} {__version__} (veil {__version__})\n")
        return 0
    if not rest or rest[0] in ("--help", "-h"):
        sys.stdout.write(_root_help(prog))
        return 0
    return None


def _command_of(args: list[str]) -> str | None:
    """The module of the command `args` name, if one exists; None: load them all."""
    for a in args:
        if _flag(a):
            continue
        if a.startswith("-"):
            return None
        name = a.replace("-", "_")
        return name if name in _command_modules() else None
    return None


def _report(err: Any) -> None:
    from veil.cli._app import state
    from veil.errors import ManifestError

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


def _usage_error(err: Any, args: list[str]) -> None:
    from veil.cli._app import state

    err.show()
    if "'-h' requires an argument" in err.format_message() and args[:1] == ["apply"]:
        # sconectl's `apply -h DIR` is --helm-template; a user who wanted help gets told so
        state.err.print(f"(in `{state.prog} apply`, -h is --helm-template DIR, as in sconectl; "
                        "help is --help)", soft_wrap=True, markup=False)


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command line; `prog` (default: from how the program was started) is the name
    it uses for itself."""
    try:
        return _main(argv, prog)
    finally:
        if argv is None:
            # the program is about to exit: the interpreter's last garbage collection would
            # walk every object the command left (pydantic's schemas, ...) only to free memory
            # the exit frees anyway — a quarter of a second for `veil up` on a loaded machine
            import gc

            gc.freeze()


def _main(argv: list[str] | None, prog: str | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prog = prog or _program(sys.argv[0] if argv is None else "veil")
    fast = _fast(args, prog)
    if fast is not None:
        return fast
    import typer

    from veil.cli._app import add_everywhere, app, state
    from veil.cli._help import plain_metavars
    from veil.errors import VeilError

    try:  # newer typer vendors click and raises the vendored copy's exceptions
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - typer that uses the click package
        from click import exceptions as click_errors  # type: ignore[no-redef]

    _load_commands(app, _command_of(args))
    state.reset(prog)
    command = typer.main.get_command(app)
    add_everywhere(command)
    plain_metavars(command)
    try:
        # typer turns a Ctrl-C (KeyboardInterrupt) and `typer.Exit(code)` into a returned code
        code = command.main(args=args, prog_name=state.prog, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            if code == 130:
                state.err.print("aborted")
            return code
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
