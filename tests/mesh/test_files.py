"""Generated trees (chart, policies): swapped in whole, left alone only when identical."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from veil.mesh.files import put_tree

FILES = {"Chart.yaml": "name: x\n", "charts/a/values.yaml": "port: 1\n",
         "charts/a/templates/d.yaml": "kind: Deployment\n", "charts/b/Chart.yaml": "name: b\n"}


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_an_identical_tree_is_not_written_again(tmp_path: Path) -> None:
    target = tmp_path / "helm"
    assert put_tree(target, FILES) is True
    inode = os.stat(target / "charts/a/values.yaml").st_ino
    assert put_tree(target, FILES) is False
    assert os.stat(target / "charts/a/values.yaml").st_ino == inode and _tree(target) == FILES


@pytest.mark.parametrize("change", [
    lambda t: (t / "charts/a/values.yaml").write_text("port: 2\n"),  # edited by hand
    lambda t: (t / "charts/b/Chart.yaml").unlink(),  # removed
    lambda t: (t / "charts/a/extra.yaml").write_text("kind: Secret\n"),  # added
    lambda t: (t / "charts/c").mkdir(),  # an empty folder
    lambda t: (t / "charts/b/Chart.yaml").write_text("name: b\nname: b\n"),  # longer
    lambda t: ((t.parent / "same.yaml").write_text("port: 1\n"),  # a link, same text
               (t / "charts/a/values.yaml").unlink(),
               (t / "charts/a/values.yaml").symlink_to(t.parent / "same.yaml")),
])
def test_any_difference_replaces_the_whole_tree(tmp_path: Path,
                                                change: Callable[[Path], object]) -> None:
    target = tmp_path / "helm"
    put_tree(target, FILES)
    change(target)
    assert put_tree(target, FILES) is True
    assert _tree(target) == FILES and not (target / "charts/c").exists()
    assert not (target / "charts/a/values.yaml").is_symlink()
