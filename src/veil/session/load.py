"""Reading a session document (YAML or JSON) with every problem reported at once, by line."""

from __future__ import annotations

import io
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarint import OctalInt

from veil.errors import ManifestError, Problem, ProblemCollector
from veil.manifest.problems import clean_message
from veil.session.model import SessionDoc

__all__ = ["load_session", "session_from_data"]


def _line_of(node: Any, loc: tuple[int | str, ...]) -> tuple[int | None, int | None]:
    """The 1-based line/column of the deepest part of `loc` that the YAML tree knows."""
    line: int | None = None
    col: int | None = None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(key, str) and hasattr(node, "keys"):
                ln, cl = lc.key(key)
                line, col = ln + 1, cl + 1
            elif lc is not None and isinstance(key, int):
                ln, cl = lc.item(key)
                line, col = ln + 1, cl + 1
            node = node[key]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line, col


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_CONFIDENTIAL = ("value", "environment", "content", "command")


def session_from_data(data: Any, file: str = "<input>", tree: Any = None) -> SessionDoc:
    """Validate plain data as a session; ManifestError lists every problem with its place."""
    problems = ProblemCollector(file=file)
    tree = data if tree is None else tree
    if not isinstance(data, dict):
        raise ManifestError([Problem("a session document is a mapping", file=file)])
    try:
        doc = SessionDoc.model_validate(data)
    except ValidationError as err:
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if isinstance(p, int | str))
            # pydantic appends the union member tried; keep only the document's path
            loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
            line, col = _line_of(tree, loc)
            # a wrong entry under `secrets` may hold a value, and environment values and file
            # contents are the configuration only an attested program sees: never echo them
            secretish = (loc[:1] == ("secrets",)) or any(p in _CONFIDENTIAL for p in loc)
            problems.add(
                clean_message(e["msg"]),
                path=_path(loc),
                line=line,
                column=col,
                value=None if secretish or e["type"] == "missing" else e.get("input"),
            )
        problems.raise_if_errors(f"{file}: not a valid session document")
        raise AssertionError("unreachable") from err
    for path, msg in doc.check():
        loc = tuple(
            int(p) if p.isdigit() else p
            for p in path.replace("[", ".").replace("]", "").split(".")
            if p
        )
        line, col = _line_of(tree, loc)
        problems.add(msg, path=path, line=line, column=col)
    problems.raise_if_errors(f"{file}: not a valid session document")
    return doc


def load_session(text: str, file: str = "<input>") -> SessionDoc:
    """Parse YAML (JSON is YAML) and validate it as a session document."""
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(io.StringIO(text))
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ManifestError(
            [
                Problem(
                    f"not valid YAML: {getattr(err, 'problem', None) or err}",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
            ]
        ) from None
    return session_from_data(_plain(tree), file=file, tree=tree)


def _plain(node: Any) -> Any:
    if hasattr(node, "items"):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, OctalInt):
        # YAML 1.2's `0o640` is the file mode 0640 (not the decimal digits of 416)
        return f"0{int(node):o}"
    return node
