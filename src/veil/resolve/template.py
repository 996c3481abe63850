"""`{{var}}` templates in values and injection files.

Rendered in a sandbox with strict undefined: a name nobody defined is an error, never an empty
string. Both filter spellings of a default work: Jinja's `default("x")` and Tera's (what sconectl
manifests use) `default(value="x")`. `$$SCONE::x$$` references are plain text to the template
engine; they are only ever substituted inside CAS.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TemplateError", "has_template", "render", "tera_default", "variables_of"]


class TemplateError(Exception):
    """A template could not be rendered; `names` lists the undefined variables if that was why."""

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


_MISSING = object()


def tera_default(piped: Any, /, default_value: Any = _MISSING, boolean: bool = False,
             **kw: Any) -> Any:
    """Jinja's `default` filter that also takes Tera's spelling, `default(value="x")`."""
    # Tera's keyword is `value`, which Jinja's own filter cannot take (it is the piped value).
    if "value" in kw:
        default_value = kw.pop("value")
    if kw:
        raise jinja2.TemplateRuntimeError(f"default() got unexpected arguments {sorted(kw)}")
    if default_value is _MISSING:
        default_value = ""
    if isinstance(piped, jinja2.Undefined) or (boolean and not piped):
        return default_value
    return piped


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                               keep_trailing_newline=True)
    env.filters["default"] = tera_default
    env.filters["d"] = tera_default
    return env


def has_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=4096)
def _compile(text: str) -> jinja2.Template:
    return _env().from_string(text)


@lru_cache(maxsize=4096)
def variables_of(text: str) -> frozenset[str]:
    """Top-level names a template refers to (including ones given a default)."""
    try:
        return frozenset(meta.find_undeclared_variables(_env().parse(text)))
    except jinja2.TemplateSyntaxError:
        return frozenset()


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render `text`; undefined names and syntax errors raise TemplateError."""
    if not has_template(text):
        return text
    try:
        return _compile(text).render(dict(context))
    except jinja2.UndefinedError as err:
        missing = tuple(sorted(n for n in variables_of(text) if n not in context))
        names = ", ".join(missing) if missing else str(err.message)
        raise TemplateError(f"undefined template variable {names}", missing) from None
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"template syntax error: {err.message}") from None
    except jinja2.TemplateError as err:
        raise TemplateError(f"template error: {err}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as err:
        # a template that calls something with the wrong arguments, divides by zero, ...
        raise TemplateError(f"template error: {err}") from None
