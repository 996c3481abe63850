"""The entrypoint check at wrap time: every kind of wrong entrypoint is a clear error with file
and line, and a good one passes without its code being run beyond the import."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ManifestError
from veil.wrap import check_entrypoint


def repo_with(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return repo


def error_of(repo: Path, spec: str) -> tuple[str, str, int | None]:
    with pytest.raises(ManifestError) as info:
        check_entrypoint(repo, spec)
    (problem,) = info.value.problems
    assert problem.path == "entrypoint" and problem.value == spec
    assert spec in info.value.message
    return problem.message, problem.file, problem.line


def test_function_and_class_pass(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, {"model.py": (
        "import pathlib\n"
        "def predict(payload):\n    'Doubles x.'\n    return payload\n"
        "class M:\n    def load(self):\n        pathlib.Path('loaded').write_text('x')\n"
        "    def predict(self, payload, extra=None):\n        return payload\n"
        "print('printing at import is fine')\n"
    )})
    report = check_entrypoint(repo, "model:predict")
    assert (report.kind, report.description, report.warnings) == ("function", "Doubles x.", [])
    assert check_entrypoint(repo, "model:M").kind == "class"
    assert not (repo / "loaded").exists(), "load() must not run at wrap time"
    assert not (repo / "__pycache__").exists(), "the customer's tree stays untouched"


def test_package_module_and_names_that_shadow_the_runner(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/scoring.py": "from settings import FACTOR\ndef run(p):\n    return p\n",
        "settings.py": "FACTOR = 2\n",
        "entry.py": "def predict(p):\n    return p\n",
    })
    assert check_entrypoint(repo, "pkg.scoring:run").kind == "function"
    assert check_entrypoint(repo, "entry:predict").kind == "function"


@pytest.mark.parametrize(
    ("files", "spec", "message", "file", "line"),
    [
        ({"model.py": "x = 1\n"}, "nomodel:predict", "module 'nomodel' not found", None, None),
        ({"model.py": "x = 1\n"}, "model:predict", "has no attribute 'predict'", "model.py", None),
        ({"model.py": "\n\ndef predict(a, b):\n    pass\n"}, "model:predict",
         "requires 2 positional parameters", "model.py", 3),
        ({"model.py": "def predict():\n    pass\n"}, "model:predict", "takes no parameter",
         "model.py", 1),
        ({"model.py": "def predict(p, *, k):\n    pass\n"}, "model:predict", "keyword-only",
         "model.py", 1),
        ({"model.py": "predict = 3\n"}, "model:predict", "not a function or class", None, None),
        ({"model.py": "class M:\n    def load(self):\n        pass\n"}, "model:M",
         "has no method predict", "model.py", 1),
        ({"model.py": "class M:\n    def predict(self):\n        pass\n"}, "model:M",
         "takes no parameter", "model.py", 2),
        ({"model.py": "class M:\n    def __init__(self, path):\n        pass\n"
                      "    def predict(self, p):\n        pass\n"}, "model:M",
         "constructor argument(s) path", "model.py", 1),
        ({"model.py": "x = 1\n\nraise RuntimeError('no config')\n"}, "model:predict",
         "RuntimeError: no config", "model.py", 3),
        ({"model.py": "def predict(p):\n    return (\n"}, "model:predict", "syntax error",
         "model.py", 2),
        ({"model.py": "x = 1\n"}, "model", "not of the form module:callable", None, None),
    ],
)
def test_wrong_entrypoints_are_named_with_file_and_line(
    tmp_path: Path, files: dict[str, str], spec: str, message: str, file: str | None,
    line: int | None,
) -> None:
    repo = repo_with(tmp_path, files)
    got_message, got_file, got_line = error_of(repo, spec)
    assert message in got_message
    if file is not None:
        assert got_file == file
    assert got_line == line


def test_missing_dependency_falls_back_to_a_static_check(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, {
        "good.py": "import not_installed_anywhere_xyz\n\ndef predict(p):\n    return p\n",
        "bad.py": "import not_installed_anywhere_xyz\n\ndef predict(a, b):\n    return a\n",
        "cls.py": "import not_installed_anywhere_xyz\nclass M:\n    def predict(self):\n"
                  "        pass\n",
    })
    report = check_entrypoint(repo, "good:predict")
    assert report.kind == "unknown"
    (warning,) = report.warnings
    assert "not_installed_anywhere_xyz" in warning.message and warning.severity == "warning"
    assert error_of(repo, "bad:predict") == (
        "predict requires 2 positional parameters; it is called with one", "bad.py", 3)
    assert "takes no parameter" in error_of(repo, "cls:M")[0]
    assert "defines no 'nothing'" in error_of(repo, "good:nothing")[0]
