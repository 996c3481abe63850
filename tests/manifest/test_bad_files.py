"""Files that are not manifests at all: each is refused with where and why, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from veil.errors import ManifestError, UserError
from veil.manifest.load import MAX_BYTES, MAX_NODES, _check_expansion, load_document

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
apiVersion: scone/5.8
kind: genservice
"""


def _error(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_document(path)
    return info.value


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    start = time.monotonic()
    err = _error(f)
    assert time.monotonic() - start < 5
    [p] = err.problems
    assert "alias" in p.message and f"{MAX_NODES:,}" in p.message
    assert p.file == str(f) and p.line is not None


def test_aliases_that_repeat_a_little_are_fine(tmp_path: Path) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: scone/5.8\nkind: genservice\nbuild: &b\n  name: a\n"
                 "  kind: python\n  to: 127.0.0.1:5000/a/b:1\n  command: python3 x.py\n")
    assert load_document(f).model.build.name == "a"


def test_a_structure_that_contains_itself_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ManifestError) as info:
        _check_expansion({"x": loop}, "f.yaml")
    assert "its own anchor" in info.value.problems[0].message


def test_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"apiVersion: scone/5.8\nkind: genservice\n# caf\xe9\n")
    [p] = _error(f).problems
    assert (p.line, p.column) == (3, 6)
    assert "UTF-8" in p.message and "0xe9" in p.message


def test_binary_file(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00")
    [p] = _error(f).problems
    assert "binary" in p.message and p.line == 1


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing here\n")
    err = _error(f)
    assert "no YAML document" in err.problems[0].message
    assert str(f) in err.message  # the summary names the file, not "input"


def test_huge_file(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    f.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    assert "at most" in _error(f).problems[0].message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory"):
        load_document(tmp_path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes(b"\xef\xbb\xbfapiVersion: scone/5.8\nkind: mesh\n")
    problems = _error(f).problems  # a mesh without its fields: read past the BOM
    assert problems and all(p.message.startswith("missing required field") for p in problems)
