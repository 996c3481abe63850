"""Help texts that read like a command line's, not like Python's type annotations.

Newer typer prints the Python type of every option in `--help` (`<str>`, `<int>`, and `<bool>`
even for flags, which take no value). That is typer's default, not a setting of ours, and it
reads as if `--dry-run` wanted an argument and `-v` an integer. Before each run the click
command tree gets the metavars click itself would show: TEXT, INTEGER, PATH, `[a|b]` for
choices, nothing for flags and counters.
"""

from __future__ import annotations

from typing import Any

__all__ = ["plain_metavars"]

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}


def _metavar(param: Any) -> str:
    desc = param.type_descriptor
    if desc.is_choice:
        return "[" + "|".join(str(c) for c in desc.choices or ()) + "]"
    if desc.is_path:
        return "PATH"
    bare = str(param.bare_type())
    return _WORDS.get(bare, bare.upper())


def _no_type(ctx: Any) -> None:
    return None


def _fix(param: Any) -> None:
    if not hasattr(param, "type_descriptor"):
        return  # a typer that renders click's own metavars
    if getattr(param, "param_type_name", "") == "argument":
        name = str(param.name or "").upper()
        if param.metavar is None:
            param.metavar = name
        desc = param.type_descriptor
        # the argument's name already stands in the usage line; only choices add something
        choices = _metavar(param) if desc.is_choice else None
        param.display_type_rich = (lambda ctx: choices) if choices else _no_type
        return
    if param.is_flag or param.count:
        param.metavar = ""
        if param.count:
            param.show_default = False
        return
    if param.metavar is None:
        param.metavar = _metavar(param)


def plain_metavars(command: Any) -> None:
    """Give every option and argument of `command` and its subcommands a plain metavar."""
    for param in getattr(command, "params", []):
        _fix(param)
    make_help_option = getattr(command, "get_help_option", None)
    if make_help_option is not None:
        # --help is made per context, after this runs; mend it when it is made
        def get_help_option(ctx: Any) -> Any:
            option = make_help_option(ctx)
            if option is not None:
                _fix(option)
            return option

        command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        plain_metavars(sub)
