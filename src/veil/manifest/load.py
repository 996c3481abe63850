"""Loading manifests: YAML with the position of every node, then the typed models.

The YAML is read round-trip (ruamel.yaml), which keeps the line and column of every key, value
and list item. Pydantic reports errors by location path (`services.1.image`); `Positions` maps
such a path back to file:line:col, so every problem of a document is reported where it is.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from veil.errors import ManifestError, Problem, ProblemCollector
from veil.manifest.models import API_VERSION_RE, GenService, Mesh
from veil.manifest.problems import describe_error

__all__ = [
    "KINDS",
    "Loaded",
    "Path_",
    "Positions",
    "format_path",
    "load_document",
    "load_genservice",
    "load_mesh",
    "parse_yaml",
    "plain",
]

KINDS = ("genservice", "mesh")
Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

# Tags of the tagged unions in the models; they appear in pydantic's error locations but not in
# the document.
_UNION_TAGS = frozenset({"var", "group"})


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    return y


def format_path(path: Sequence[str | int]) -> str:
    """`('services', 1, 'image')` → `services[1].image`."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


def plain(node: Any) -> Any:
    """The round-trip tree as plain dicts, lists and scalars (what the models validate)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, int | float | bool) else k: plain(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


@dataclass
class Positions:
    """Where each node of one document is (1-based line and column)."""

    file: str
    root: Any

    def node(self, path: Sequence[str | int]) -> Any:
        cur = self.root
        for p in path:
            in_map = isinstance(cur, dict) and p in cur
            in_list = isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur)
            if not (in_map or in_list):
                return None
            cur = cur[p]
        return cur

    def clean(self, loc: Sequence[str | int]) -> Path_:
        """Drop the union tags pydantic inserts into error locations."""
        cur: Any = self.root
        out: list[str | int] = []
        for i, p in enumerate(loc):
            is_tag = isinstance(p, str) and p in _UNION_TAGS and i < len(loc) - 1
            if is_tag and not (isinstance(cur, dict) and p in cur):
                continue
            out.append(p)
            if isinstance(cur, dict):
                cur = cur.get(p)
            elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
                cur = cur[p]
            else:
                cur = None
        return tuple(out)

    def at(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Position of the value at `path` (or of its key); the nearest existing ancestor else."""
        path = list(path)
        while path:
            parent = self.node(path[:-1])
            last = path[-1]
            try:
                if isinstance(parent, CommentedMap) and last in parent:
                    ln, col = parent.lc.key(last) if key else parent.lc.value(last)
                    return ln + 1, col + 1
                if (isinstance(parent, CommentedSeq) and isinstance(last, int)
                        and 0 <= last < len(parent)):
                    ln, col = parent.lc.item(last)
                    return ln + 1, col + 1
            except (KeyError, TypeError, AttributeError):
                pass
            if isinstance(parent, CommentedMap | CommentedSeq) and not (
                isinstance(parent, CommentedMap) and last in parent
            ):
                # a missing field: point at the mapping that should hold it
                ln, col = parent.lc.line, parent.lc.col
                return ln + 1, col + 1
            path.pop()
        if isinstance(self.root, CommentedMap | CommentedSeq):
            return self.root.lc.line + 1, self.root.lc.col + 1
        return 1, 1

    def problem(self, message: str, path: Sequence[str | int], **kw: Any) -> Problem:
        line, col = self.at(path, key=kw.pop("key", False))
        return Problem(message, file=self.file, line=line, column=col,
                       path=format_path(path), **kw)


@dataclass
class Loaded:
    """One loaded document: its model, its round-trip tree and where everything is."""

    file: str
    kind: str
    tree: Any
    positions: Positions
    model: Any = None
    warnings: list[Problem] = field(default_factory=list)


def parse_yaml(text: str, file: str) -> Any:
    """The round-trip tree of a single YAML document; syntax errors carry their position."""
    try:
        docs = list(_yaml().load_all(io.StringIO(text)))
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        msg = " ".join(s for s in (err.context, err.problem) if s) or "invalid YAML"
        raise ManifestError(
            [Problem(f"invalid YAML: {msg}", file=file,
                     line=mark.line + 1 if mark else None,
                     column=mark.column + 1 if mark else None)],
            summary=f"{file} is not valid YAML",
        ) from None
    except YAMLError as err:
        raise ManifestError([Problem(f"invalid YAML: {err}", file=file)],
                            summary=f"{file} is not valid YAML") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
            NotImplementedError) as err:
        # ruamel.yaml lets some errors through unwrapped (`!!int "abc"`, odd comment placement)
        raise ManifestError([Problem(f"invalid YAML: cannot construct a value: {err}",
                                     file=file)],
                            summary=f"{file} is not valid YAML") from None
    docs = [d for d in docs if d is not None]
    if len(docs) > 1:
        raise ManifestError(
            [Problem("a manifest file holds one document; found several (separated by ---)",
                     file=file, line=1, column=1)]
        )
    return docs[0] if docs else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        from veil.errors import UserError

        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        from veil.errors import UserError

        raise UserError(f"{path}: cannot read: {err}") from None


def load_document(path: Path | str, text: str | None = None) -> Loaded:
    """Parse and validate a manifest of either kind; every problem is reported at once."""
    file = str(path)
    if text is None:
        text = _read(Path(path))
    tree = parse_yaml(text, file)
    pos = Positions(file, tree)
    col = ProblemCollector(file=file)
    if not isinstance(tree, dict):
        col.add("a manifest is a YAML mapping with apiVersion and kind", line=1, column=1,
                value=plain(tree) if tree is not None else None,
                allowed="a mapping with `apiVersion: scone/5.8` and `kind: genservice|mesh`")
        col.raise_if_errors()
    kind = tree.get("kind")
    if kind not in KINDS:
        if kind is None:
            col.extend([pos.problem("missing required field", ("kind",),
                                    allowed="genservice, mesh")])
        else:
            col.extend([pos.problem("unknown kind", ("kind",), value=plain(kind),
                                    allowed="genservice, mesh")])
        _check_api_version(tree, pos, col)
        col.raise_if_errors()
    loaded = Loaded(file=file, kind=str(kind), tree=tree, positions=pos)
    model_cls: type[BaseModel] = GenService if kind == "genservice" else Mesh
    loaded.model = validate(model_cls, tree, pos, col)
    from veil.manifest.check import check_document

    check_document(loaded, col)
    loaded.warnings = col.warnings
    col.raise_if_errors(summary=_summary(file, len(col.errors)))
    return loaded


def _summary(file: str, n: int) -> str:
    return f"{n} error{'s' if n != 1 else ''} in {file}"


def _check_api_version(tree: Any, pos: Positions, col: ProblemCollector) -> None:
    v = tree.get("apiVersion")
    if v is None:
        col.extend([pos.problem("missing required field", ("apiVersion",),
                                allowed="scone/X.Y[.Z] with X.Y >= 5.8, e.g. scone/5.8")])
    elif not (isinstance(v, str) and API_VERSION_RE.match(v)):
        col.extend([pos.problem("unsupported apiVersion", ("apiVersion",), value=plain(v),
                                allowed="scone/X.Y[.Z] with X.Y >= 5.8, e.g. scone/5.8")])


def validate(model_cls: type[M], tree: Any, pos: Positions,
             col: ProblemCollector) -> M | None:
    """Validate against `model_cls`; each pydantic error becomes a positioned Problem."""
    try:
        return model_cls.model_validate(plain(tree))
    except ValidationError as err:
        for e in err.errors(include_url=False):
            path = pos.clean(e["loc"])
            message, allowed, key = describe_error(model_cls, path, e)
            value = None if e["type"] == "missing" else e.get("input")
            if isinstance(value, dict | list):
                value = None  # a whole subtree is noise; the position says where
            col.extend([pos.problem(message, path, value=value, allowed=allowed, key=key)])
        return None


def load_genservice(path: Path | str, text: str | None = None) -> Loaded:
    loaded = load_document(path, text)
    _expect(loaded, "genservice")
    return loaded


def load_mesh(path: Path | str, text: str | None = None) -> Loaded:
    loaded = load_document(path, text)
    _expect(loaded, "mesh")
    return loaded


def _expect(loaded: Loaded, kind: Literal["genservice", "mesh"]) -> None:
    if loaded.kind != kind:
        raise ManifestError([loaded.positions.problem(
            f"expected a {kind} manifest", ("kind",), value=loaded.kind, allowed=kind)])
