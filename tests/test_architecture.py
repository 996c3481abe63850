"""The layers of the code: lower packages never import higher ones, and the launcher's package
stays standard-library only (it runs inside every image, before anything is provisioned).

Every import counts, the ones inside functions too (deferred imports are still dependencies)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "veil"

# Lowest first. A package may import the packages of lower layers (and its own), nothing else:
# not even a neighbour in its own layer.
LAYERS: list[set[str]] = [
    {"errors", "paths", "fsutil", "runtime"},
    {"manifest"},
    {"resolve", "session", "wrap"},
    {"policy", "cas", "image"},
    {"deploy"},
    {"mesh"},  # the use case "apply a mesh"
    {"local", "platform"},  # `veil up` and the platform service call the use cases
    {"cli"},  # parses and prints only
    {"__main__", "__init__"},
]
LAYER = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}


def _package(src: Path, path: Path) -> str:
    rel = path.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(src: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; relative ones resolved."""
    rel = path.relative_to(src.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a module is in; an __init__'s is its folder
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module


def _files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def upward_imports(src: Path) -> list[str]:
    wrong = []
    for path in _files(src):
        pkg = _package(src, path)
        for line, module in _imports(src, path):
            parts = module.split(".")
            if parts[0] != "veil" or len(parts) < 2 or parts[1] == pkg:
                continue
            if LAYER.get(parts[1], len(LAYERS)) >= LAYER.get(pkg, -1):
                wrong.append(f"{path.relative_to(src.parent)}:{line}: {pkg} imports {module}")
    return wrong


def runtime_non_stdlib(src: Path) -> list[str]:
    wrong = []
    for path in _files(src / "runtime"):
        for line, module in _imports(src, path):
            top = module.split(".")[0]
            inside = module == "veil.runtime" or module.startswith("veil.runtime.")
            if not inside and top != "__future__" and (
                    top == "veil" or top not in sys.stdlib_module_names):
                wrong.append(f"{path.relative_to(src.parent)}:{line}: imports {module}")
    return wrong


def test_every_package_has_a_layer() -> None:
    packages = {_package(SRC, p) for p in _files(SRC)}
    assert packages <= set(LAYER), f"give these packages a layer: {sorted(packages - set(LAYER))}"


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = upward_imports(SRC)
    assert not wrong, "\n".join(wrong)


def test_the_runtime_is_standard_library_only() -> None:
    wrong = runtime_non_stdlib(SRC)
    assert not wrong, "\n".join(wrong)


def test_the_checks_find_what_they_are_for(tmp_path: Path) -> None:
    """The checks can fail: upward, relative and third-party imports in a small tree are found."""
    src = tmp_path / "veil"
    for rel, text in {
        "manifest/__init__.py": "",
        "manifest/model.py": "def f():\n    from veil.cli import main\n",
        "session/model.py": "from ..manifest import model\nfrom ..mesh import apply\n",
        "runtime/__init__.py": "",
        "runtime/launcher.py": "import json\nfrom . import guard\nimport httpx\n"
                               "from veil.errors import UserError\n",
        "runtime/guard.py": "import os\n",
        "cli/__init__.py": "from veil.mesh import apply\n",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text, encoding="utf-8")
    assert upward_imports(src) == [
        "veil/manifest/model.py:2: manifest imports veil.cli",
        "veil/runtime/launcher.py:4: runtime imports veil.errors",
        "veil/session/model.py:2: session imports veil.mesh",
    ]
    assert runtime_non_stdlib(src) == [
        "veil/runtime/launcher.py:3: imports httpx",
        "veil/runtime/launcher.py:4: imports veil.errors",
    ]
