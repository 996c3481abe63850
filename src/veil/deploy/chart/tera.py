"""Tera, as sconectl's `--helm-template` files use it, filled at apply time; Helm's own
`{{ ... }}` actions pass through untouched for Helm to render at install.

A template file mixes two languages that share `{{ }}`. Everything in `{% %}` and `{# #}` is
Tera (Go templates have neither). A `{{ }}` is Tera's when it starts with a name Tera knows
there — a fact about the service (`FACTS` in `veil.deploy.chart.custom`), a `{% set %}` or
`{% for %}` variable, `loop` — or is a list literal, or a bare name, optionally with
`| default(...)` (a name that is no fact is then an error, not Helm's to guess); any other
action (`{{ .Values.x }}`, `{{- include "x" . }}`, `{{ toYaml .Values.r | nindent 4 }}`,
`{{ end }}`) is Helm's.

Tera's blocks are rendered with Jinja in a sandbox, where the two languages agree: `if`/`elif`/
`else`, `for x in list` (and `for k, v in map`), `set x = ...`, `raw`, comments, whitespace
control with `-`, filters with Tera's keyword arguments (`default(value=)`, `replace(from=,
to=)`, `join(sep=)`, `truncate(length=)`, `split(pat=)`, ...), tests such as `is defined` and
`is starting_with(...)`. Helm's actions are wrapped in `{% raw %}` first, so they come out
exactly as written. Any other tag (macros, includes, `set_global`, `break`, ...) is refused
naming the file, the line and the tag; so is a name that nothing defines.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from veil.resolve.template import tera_default

__all__ = ["BLOCK_TAGS", "TeraError", "fill"]

BLOCK_TAGS = ("if", "elif", "else", "endif", "for", "endfor", "set", "raw", "endraw")


class TeraError(Exception):
    """A template that cannot be filled: `line` (1-based) and what is wrong there."""

    def __init__(self, line: int | None, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.name = name  # the undefined name, when that is the problem


# a raw block, a comment, a tag, an expression: the first that starts at a position wins
_TOKEN = re.compile(
    r"(?P<raw>\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\})"
    r"|(?P<comment>\{#.*?#\})"
    r"|(?P<tag>\{%.*?%\})"
    r"|(?P<expr>\{\{.*?\}\})",
    re.S,
)
_TAG_NAME = re.compile(r"\{%-?\s*([A-Za-z_]\w*)?")
_FOR_PAIR = re.compile(
    r"^(?P<head>\{%-?\s*for\s+[A-Za-z_]\w*\s*,\s*[A-Za-z_]\w*\s+in\s+)(?P<expr>.*?)"
    r"(?P<tail>\s*-?%\})$", re.S)
_DECLARED = re.compile(
    r"\{%-?\s*(?:for\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b|set\s+([A-Za-z_]\w*)\s*=)")
_WORD = re.compile(r"[A-Za-z_]\w*")
# `name`, `a.b`, `name | default(value="x")` / `default("x")` (Tera and Jinja spellings)
_BARE = re.compile(
    r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
    r"(?:\s*\|\s*(?:default|d)\s*\(\s*(?:value\s*=\s*)?(?:\"(?:[^\"\\]|\\.)*\"|'[^']*')\s*\))?")
# Go template words an action may consist of alone: Helm's, never a placeholder
_GO_WORDS = frozenset({"end", "else", "break", "continue", "nil", "true", "false"})


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _is_tera(expr: str, known: Iterable[str]) -> bool:
    inner = expr[2:-2].strip()
    inner = inner.removeprefix("-").removesuffix("-").strip()
    if inner.startswith("["):  # a list: Go's actions have none
        return True
    first = _WORD.match(inner)
    if first is None:  # `.Values`, `$x`, `/* comment */`, `(...)`, "text": Helm's
        return False
    if first.group(0) in _GO_WORDS and first.end() == len(inner):
        return False
    return first.group(0) in known or _BARE.fullmatch(inner) is not None


def translate(text: str, facts: Iterable[str]) -> str:
    """The Jinja source that renders `text`: Helm's actions wrapped in raw blocks (no line
    moves), `for k, v in map` over the map's items. Raises `TeraError` for a tag Tera and
    Jinja do not share."""
    known = {*facts, "loop"}
    for m in _DECLARED.finditer(text):
        known.update(n for n in m.groups() if n)
    out: list[str] = []
    opened: list[tuple[str, int]] = []  # if / for blocks not closed yet, with their lines
    last = 0
    for m in _TOKEN.finditer(text):
        out.append(text[last:m.start()])
        last = m.end()
        token = m.group(0)
        if m.group("tag") is not None:
            name = _TAG_NAME.match(token)
            tag = name.group(1) if name else None
            if tag in ("raw", "endraw"):
                other = "endraw" if tag == "raw" else "raw"
                raise TeraError(_line(text, m.start()),
                                f"`{{% {tag} %}}` without its `{{% {other} %}}`", tag)
            if tag not in BLOCK_TAGS:
                what = f"`{{% {tag} %}}`" if tag else f"`{token[:40]}`"
                raise TeraError(_line(text, m.start()), f"{what} is not supported", tag)
            _nest(opened, tag, _line(text, m.start()))
            pair = _FOR_PAIR.match(token)
            if pair is not None:  # Tera iterates a map's (key, value) pairs, Jinja its keys
                token = f"{pair['head']}(({pair['expr']}) | tera_items){pair['tail']}"
        elif m.group("expr") is not None and not _is_tera(token, known):
            token = "{% raw %}" + token + "{% endraw %}"
        out.append(token)
    rest = text[last:]
    for opener in ("{%", "{#"):
        if opener in rest:
            raise TeraError(_line(text, last + rest.index(opener)),
                            f"`{opener}` is never closed")
    if opened:
        tag, line = opened[-1]
        raise TeraError(line, f"`{{% {tag} %}}` is never closed by `{{% end{tag} %}}`", tag)
    out.append(rest)
    return "".join(out)


def _nest(opened: list[tuple[str, int]], tag: str, line: int) -> None:
    if tag in ("if", "for"):
        opened.append((tag, line))
    elif tag in ("endif", "endfor"):
        if not opened or opened[-1][0] != tag[3:]:
            inner = f"; `{{% {opened[-1][0]} %}}` of line {opened[-1][1]} is open" \
                if opened else ""
            raise TeraError(line, f"`{{% {tag} %}}` closes no `{{% {tag[3:]} %}}`{inner}", tag)
        opened.pop()
    elif tag == "elif" and (not opened or opened[-1][0] != "if"):
        raise TeraError(line, "`{% elif %}` outside an `{% if %}`", tag)
    elif tag == "else" and not opened:
        raise TeraError(line, "`{% else %}` outside an `{% if %}`", tag)


def _replace(s: Any, *args: Any, **kw: Any) -> str:
    old = kw.pop("from", args[0] if args else None)
    new = kw.pop("to", args[1] if len(args) > 1 else None)
    if old is None or new is None or kw:
        raise jinja2.TemplateRuntimeError("replace takes from= and to=")
    return str(s).replace(str(old), str(new))


def _join(seq: Any, *args: Any, sep: str | None = None) -> str:
    return (sep if sep is not None else (args[0] if args else "")).join(str(x) for x in seq)


def _split(s: Any, *args: Any, pat: str | None = None) -> list[str]:
    return str(s).split(pat if pat is not None else (args[0] if args else None))


def _truncate(s: Any, *args: Any, length: int | None = None, end: str = "…") -> str:
    n = length if length is not None else (args[0] if args else 255)
    text = str(s)
    return text if len(text) <= n else text[:n] + end


def _items(v: Any) -> Any:
    return list(v.items()) if isinstance(v, Mapping) else v


def _range(*args: int, start: int = 0, end: int | None = None, step_by: int = 1) -> range:
    if args:
        return range(*args)
    if end is None:
        raise jinja2.TemplateRuntimeError("range takes end= (and start=, step_by=)")
    return range(start, end, step_by)


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                               keep_trailing_newline=True)
    env.filters.update({
        "default": tera_default, "d": tera_default, "replace": _replace, "join": _join,
        "split": _split, "truncate": _truncate, "tera_items": _items,
        "as_str": str, "trim_start": lambda s: str(s).lstrip(),
        "trim_end": lambda s: str(s).rstrip(),
        "trim_start_matches": lambda s, pat: str(s).removeprefix(pat),
        "trim_end_matches": lambda s, pat: str(s).removesuffix(pat),
    })
    env.tests.update({
        "starting_with": lambda s, pat: str(s).startswith(pat),
        "ending_with": lambda s, pat: str(s).endswith(pat),
        "containing": lambda s, x: x in s,
    })
    env.globals = {"range": _range}  # nothing else: no environment, no files, no time
    return env


@lru_cache(maxsize=512)
def _compiled(text: str, facts: frozenset[str]) -> jinja2.Template:
    """One compiled template per distinct file: a mesh of many services that share their
    templates translates and compiles each file once."""
    source = translate(text, facts)
    try:
        return _env().from_string(source)
    except jinja2.TemplateSyntaxError as err:
        raise TeraError(err.lineno, err.message or "syntax error") from None


def _template_line(err: BaseException) -> int | None:
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename == "<template>":
            return frame.lineno
    return None


def fill(text: str, context: Mapping[str, Any]) -> str:
    """`text` with Tera filled from `context` and Helm's actions as they were."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text
    template = _compiled(text, frozenset(context))
    try:
        return template.render(dict(context))
    except jinja2.UndefinedError as err:
        line = _template_line(err)
        m = re.search(r"'([^']+)' is undefined", str(err.message))
        name = m.group(1) if m else None
        what = f"`{name}` is not defined" if name else str(err.message)
        raise TeraError(line, what, name) from None
    except jinja2.TemplateError as err:
        raise TeraError(_template_line(err), str(err)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as err:
        raise TeraError(_template_line(err), f"cannot be filled: {err}") from None
