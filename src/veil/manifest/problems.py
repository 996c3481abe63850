"""Turning pydantic's error records into the user's words: what is wrong and what is allowed."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["INTERNAL_PREFIXES", "clean_message", "describe_error", "field_names", "model_at"]

# pydantic puts these before the text a validator raised (ValueError, assert); they name
# pydantic's machinery, not anything in the user's file
INTERNAL_PREFIXES = ("Value error, ", "Assertion failed, ")

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
}


def field_names(cls: type[BaseModel]) -> list[str]:
    """The names a user writes for the fields of `cls` (aliases where there are some)."""
    return [f.alias or name for name, f in cls.model_fields.items()]


def _strip(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _options(tp: Any) -> list[Any]:
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        out: list[Any] = []
        for a in get_args(tp):
            out.extend(_options(a))
        return out
    return [tp]


def _step(tp: Any, key: str | int, nxt: str | int | None) -> Any:
    """The type one level below `tp` when following `key`."""
    for opt in _options(tp):
        if isinstance(key, int) and get_origin(opt) is list:
            inner = get_args(opt)[0]
            models = [o for o in _options(inner) if isinstance(o, type)
                      and issubclass(o, BaseModel)]
            if isinstance(nxt, str):
                for m in models:
                    if nxt in field_names(m):
                        return m
            return inner
        if isinstance(key, str) and isinstance(opt, type) and issubclass(opt, BaseModel):
            for name, f in opt.model_fields.items():
                if key in (name, f.alias):
                    return f.annotation
    return None


def model_at(cls: type[BaseModel], path: Sequence[str | int],
             nxt: str | int | None = None) -> type[BaseModel] | None:
    """The model class that describes the mapping at `path`, if one does."""
    tp: Any = cls
    for i, key in enumerate(path):
        following = path[i + 1] if i + 1 < len(path) else nxt
        tp = _step(tp, key, following)
        if tp is None:
            return None
    for opt in _options(tp):
        is_model = isinstance(opt, type) and issubclass(opt, BaseModel)
        if is_model and (nxt is None or (isinstance(nxt, str) and nxt in field_names(opt))):
            return typing.cast(type[BaseModel], opt)
    return None


def _allowed_of_field(cls: type[BaseModel], path: Sequence[str | int]) -> str | None:
    if not path:
        return None
    tp: Any = cls
    for i, key in enumerate(path):
        tp = _step(tp, key, path[i + 1] if i + 1 < len(path) else None)
        if tp is None:
            return None
    opts = _options(tp)
    words = []
    for o in opts:
        if get_origin(o) is Literal:
            words.append(", ".join(str(a) for a in get_args(o)))
        elif o is str:
            words.append("a string")
        elif o is int:
            words.append("an integer")
        elif o is bool:
            words.append("true or false")
        elif get_origin(o) is list:
            words.append("a list")
        elif isinstance(o, type) and issubclass(o, BaseModel):
            words.append("a mapping with " + ", ".join(field_names(o)))
    return " or ".join(dict.fromkeys(words)) or None


def clean_message(msg: object) -> str:
    """A pydantic error message without pydantic's internal prefix."""
    text = str(msg)
    for prefix in INTERNAL_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def describe_error(cls: type[BaseModel], path: Sequence[str | int],
                   err: Any) -> tuple[str, str | None, bool]:
    """(message, allowed, point-at-key) for one pydantic error at the cleaned `path`."""
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind == "missing":
        field = path[-1] if path else "?"
        return f"missing required field `{field}`", _allowed_of_field(cls, path), False
    if kind == "extra_forbidden":
        parent = model_at(cls, path[:-1])
        allowed = ", ".join(field_names(parent)) if parent else None
        return f"unknown field `{path[-1]}`", allowed, True
    if kind == "literal_error":
        return "value not allowed", str(ctx.get("expected", "")).replace("'", ""), False
    if kind == "enum":
        return "value not allowed", str(ctx.get("expected", "")).replace("'", ""), False
    if kind in ("too_short", "too_long"):
        what = "items" if kind == "too_short" else "items at most"
        n = ctx.get("min_length", ctx.get("max_length"))
        if kind == "too_short" and n == 1 and isinstance(err.get("input"), str | type(None)):
            return "must not be empty", "a non-empty string", False
        return ("too few items" if kind == "too_short" else "too many items"), f"{n} {what}", False
    if kind == "string_too_short":
        return "must not be empty", "a non-empty string", False
    if kind == "string_pattern_mismatch":
        if path and path[-2:] == ("build", "name"):
            return ("not a usable name: it names the folder target/<name>/",
                    "letters, digits, _ . - (starting with a letter or digit, at most 128)", False)
        return "value does not match the expected form", f"pattern {ctx.get('pattern')}", False
    if kind in ("greater_than", "less_than_equal", "greater_than_equal", "less_than"):
        return err["msg"].lower(), None, False
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping", _allowed_of_field(cls, path), False
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}", _allowed_of_field(cls, path), False
    if kind == "value_error":
        msg = clean_message(err["msg"])
        allowed = None
        if path and path[-1] == "apiVersion":
            allowed = "scone/X.Y[.Z] with X.Y >= 5.8, e.g. scone/5.8"
        return msg, allowed, False
    if kind == "union_tag_invalid":
        return "unrecognised item", _allowed_of_field(cls, path), False
    return clean_message(err["msg"]), _allowed_of_field(cls, path), False
