"""Loading manifests: YAML with the position of every node, then the typed models.

The YAML is read round-trip (ruamel.yaml), which keeps the line and column of every key, value
and list item. Pydantic reports errors by location path (`services.1.image`); `Positions` maps
such a path back to file:line:col, so every problem of a document is reported where it is.
"""

from __future__ import annotations

import io
import sys
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
    "decode_manifest",
    "format_path",
    "load_document",
    "load_genservice",
    "load_mesh",
    "parse_yaml",
    "plain",
    "read_manifest",
]

KINDS = ("genservice", "mesh")
MAX_BYTES = 4 * 1024 * 1024  # manifests are a few kB; megabytes are a wrong file
# Values a document may hold once its aliases are expanded: a generous bound for a manifest,
# and far below what an alias bomb ("billion laughs") expands to.
MAX_NODES = 200_000
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
                     file=file, line=1, column=1)], summary=f"{file} is not a single manifest",
        )
    if docs:
        _check_expansion(docs[0], file)
    return docs[0] if docs else None


def _check_expansion(root: Any, file: str) -> None:
    """Refuse a recursive alias, or aliases that multiply the document past MAX_NODES.

    The round-trip loader shares aliased nodes, so loading is cheap; everything after it
    (`plain`, validation) would expand them. Counting with a memo per node stays linear.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise _Recursive
        open_.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                break
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        total = size(root)
    except _Recursive:
        raise ManifestError([Problem(
            "an alias refers to its own anchor: the document would be infinitely deep",
            file=file, allowed="anchors (&name) and aliases (*name) that do not contain "
            "themselves")], summary=f"{file} is not a usable manifest") from None
    except RecursionError:
        raise ManifestError([Problem("the document is nested too deeply", file=file)],
                            summary=f"{file} is not a usable manifest") from None
    if total > MAX_NODES:
        line, col = 1, 1
        if isinstance(root, CommentedMap):
            for k in root:
                if sizes.get(id(root[k]), 1) > MAX_NODES // 100:
                    line, col = (v + 1 for v in root.lc.key(k))
                    break
        raise ManifestError([Problem(
            f"aliases expand the document to more than {MAX_NODES:,} values "
            "(an alias bomb?)", file=file, line=line, column=col,
            allowed="anchors and aliases that repeat a few values, not multiply them")],
            summary=f"{file} is not a usable manifest")


class _Recursive(Exception):
    """An anchored node that contains an alias of itself."""


def decode_manifest(data: bytes, file: str) -> str:
    """The text of a manifest file; a file that is not UTF-8 text names where it stops being so."""
    if len(data) > MAX_BYTES:
        raise ManifestError([Problem(
            f"the file has {len(data):,} bytes; a manifest has at most {MAX_BYTES:,}", file=file,
            allowed="a YAML manifest (genservice or mesh)")], summary=f"{file} is too large")
    nul = data.find(b"\0")
    if nul >= 0:
        line, col = _line_col(data, nul)
        raise ManifestError([Problem(
            "a binary file, not YAML text (it holds a NUL byte)", file=file, line=line,
            column=col, allowed="a YAML manifest in UTF-8")], summary=f"{file} is not a manifest")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, col = _line_col(data, err.start)
        raise ManifestError([Problem(
            f"not UTF-8 text: byte 0x{data[err.start]:02x} cannot start or continue a character",
            file=file, line=line, column=col,
            allowed="UTF-8 text (convert it, e.g. `iconv -f latin1 -t utf-8`)")],
            summary=f"{file} is not UTF-8") from None


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def read_manifest(path: Path) -> str:
    """Read and decode the manifest at `path`; `-` reads standard input."""
    from veil.errors import UserError

    if str(path) == "-":
        return decode_manifest(sys.stdin.buffer.read(), "<stdin>")
    try:
        if path.is_dir():
            raise UserError(f"{path} is a directory, not a manifest file",
                            hint="name the YAML file itself, e.g. -f service.yaml")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    return decode_manifest(data, str(path))


def load_document(path: Path | str, text: str | None = None) -> Loaded:
    """Parse and validate a manifest of either kind; every problem is reported at once."""
    file = str(path)
    if text is None:
        text = read_manifest(Path(path))
    tree = parse_yaml(text, file)
    pos = Positions(file, tree)
    col = ProblemCollector(file=file)
    if tree is None:
        col.add("the file holds no YAML document (it is empty or only comments)", line=1,
                column=1, allowed="a mapping with `apiVersion: scone/5.8` and "
                "`kind: genservice|mesh`")
    elif not isinstance(tree, dict):
        col.add("a manifest is a YAML mapping with apiVersion and kind", line=1, column=1,
                value=plain(tree),
                allowed="a mapping with `apiVersion: scone/5.8` and `kind: genservice|mesh`")
    col.raise_if_errors(summary=_summary(file, 1))
    kind = tree.get("kind")
    if kind not in KINDS:
        if kind is None:
            col.extend([pos.problem("missing required field", ("kind",),
                                    allowed="genservice, mesh")])
        else:
            col.extend([pos.problem("unknown kind", ("kind",), value=plain(kind),
                                    allowed="genservice, mesh")])
        _check_api_version(tree, pos, col)
        col.raise_if_errors(summary=_summary(file, len(col.errors)))
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
            f"expected a {kind} manifest", ("kind",), value=loaded.kind, allowed=kind)],
            summary=_summary(loaded.file, 1))
