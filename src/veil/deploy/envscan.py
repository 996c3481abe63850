"""Which environment variables a program reads, found by reading its source (never running it).

Recognised, with `os` imported under any name and `environ`/`getenv` imported from `os`:

    os.environ["X"]                 required
    os.environ.get("X"[, d])        defaulted (to d, or to None)
    os.getenv("X"[, d])             defaulted
    os.environ.setdefault("X", d)   defaulted
    environ.get("X"), environ["X"]  as above, for `from os import environ`
    class S(BaseSettings): x: int   pydantic-settings: X (with the class's env_prefix), required
                                    unless the field has a default

A name that is computed (`os.environ[f"{p}_URL"]`) cannot be known statically: it is reported
so that the author can declare it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Read", "scan_file", "scan_tree"]

_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".tox", "site-packages"}
MAX_FILES = 5000


@dataclass(frozen=True)
class Read:
    """One place where the program reads a variable."""

    name: str | None  # None: computed name
    file: str
    line: int
    how: str  # e.g. "os.getenv", "pydantic-settings"
    has_default: bool


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str) -> None:
        self.file = file
        self.reads: list[Read] = []
        self.os_names = {"os"}
        self.environ_names: set[str] = set()
        self.getenv_names: set[str] = set()
        self.settings_bases = {"BaseSettings"}

    # imports decide which names mean os / os.environ / os.getenv
    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name == "os":
                self.os_names.add(a.asname or "os")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            if node.module == "os" and a.name == "environ":
                self.environ_names.add(a.asname or a.name)
            elif node.module == "os" and a.name == "getenv":
                self.getenv_names.add(a.asname or a.name)
            elif node.module and node.module.split(".")[0] in ("pydantic_settings", "pydantic") \
                    and a.name == "BaseSettings":
                self.settings_bases.add(a.asname or a.name)

    def _is_environ(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.environ_names or node.id == "environ"
        return (isinstance(node, ast.Attribute) and node.attr == "environ"
                and isinstance(node.value, ast.Name) and node.value.id in self.os_names)

    def _add(self, key: ast.expr | None, node: ast.AST, how: str, has_default: bool) -> None:
        name = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None
        self.reads.append(Read(name, self.file, getattr(node, "lineno", 0), how, has_default))

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_environ(node.value) and isinstance(node.ctx, ast.Load):
            self._add(node.slice, node, "os.environ[...]", False)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        key = node.args[0] if node.args else None
        has_default = len(node.args) > 1 or any(k.arg == "default" for k in node.keywords)
        if isinstance(f, ast.Attribute) and self._is_environ(f.value):
            if f.attr == "get":
                self._add(key, node, "os.environ.get", True)
            elif f.attr == "setdefault":
                self._add(key, node, "os.environ.setdefault", True)
            elif f.attr == "pop":
                self._add(key, node, "os.environ.pop", has_default)
        elif (isinstance(f, ast.Attribute) and f.attr == "getenv"
              and isinstance(f.value, ast.Name) and f.value.id in self.os_names) \
                or (isinstance(f, ast.Name) and f.id in self.getenv_names):
            self._add(key, node, "os.getenv", True)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any(_base_name(b) in self.settings_bases for b in node.bases):
            self._settings(node)
        self.generic_visit(node)

    def _settings(self, node: ast.ClassDef) -> None:
        prefix = _env_prefix(node)
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            field = stmt.target.id
            if field.startswith("_") or field == "model_config" or _is_classvar(stmt.annotation):
                continue
            alias, has_default = _field_call(stmt.value)
            name = alias or f"{prefix}{field}"
            # pydantic-settings matches names case-insensitively by default
            self.reads.append(Read(name.upper(), self.file, stmt.lineno, "pydantic-settings",
                                   has_default))


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _is_classvar(node: ast.expr) -> bool:
    target = node.value if isinstance(node, ast.Subscript) else node
    return _base_name(target) == "ClassVar"


def _env_prefix(node: ast.ClassDef) -> str:
    for stmt in node.body:
        value: ast.expr | None = None
        targets = stmt.targets if isinstance(stmt, ast.Assign) else \
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "model_config" for t in targets):
            value = getattr(stmt, "value", None)
        if isinstance(value, ast.Call):
            for kw in value.keywords:
                if kw.arg == "env_prefix" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "env_prefix" \
                        and isinstance(v, ast.Constant):
                    return str(v.value)
        if isinstance(stmt, ast.ClassDef) and stmt.name == "Config":  # pydantic v1 style
            for inner in stmt.body:
                if isinstance(inner, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == "env_prefix" for t in inner.targets) \
                        and isinstance(inner.value, ast.Constant):
                    return str(inner.value.value)
    return ""


def _field_call(value: ast.expr | None) -> tuple[str | None, bool]:
    """(alias, has_default) of a field's right-hand side."""
    if value is None:
        return None, False
    if not (isinstance(value, ast.Call) and _base_name(value.func) == "Field"):
        return None, True
    alias = None
    for kw in value.keywords:
        if kw.arg in ("alias", "validation_alias") and isinstance(kw.value, ast.Constant):
            alias = str(kw.value.value)
    has_default = any(kw.arg in ("default", "default_factory") for kw in value.keywords)
    if value.args:
        first = value.args[0]
        has_default = has_default or not (isinstance(first, ast.Constant)
                                          and first.value is Ellipsis)
    return alias, has_default


def scan_file(path: Path, shown_as: str) -> list[Read]:
    try:
        tree = ast.parse(path.read_bytes(), filename=shown_as)
    except (SyntaxError, ValueError):
        return []  # not ours to judge here; the wrapper's entrypoint check reports it
    scanner = _Scanner(shown_as)
    # imports first, wherever they are, so that names bound later in the file count too
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            scanner.visit_Import(node)
        elif isinstance(node, ast.ImportFrom):
            scanner.visit_ImportFrom(node)
    scanner.visit(tree)
    return scanner.reads


def _python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if path.is_symlink():
            continue  # a link may leave the repository
        yield path


def scan_tree(root: Path) -> list[Read]:
    """Every read in the Python files under `root` (a file or a folder), in file order."""
    if root.is_file():
        return scan_file(root, root.name)
    reads: list[Read] = []
    for n, path in enumerate(_python_files(root)):
        if n >= MAX_FILES:
            break
        reads.extend(scan_file(path, str(path.relative_to(root))))
    return reads
