"""Removing generated trees: all of it, in threads when large, never what a link points at."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.fsutil import remove_tree, replace_dir


def _tree(root: Path, n: int) -> None:
    for i in range(n):
        (root / "charts" / f"s{i}" / "templates").mkdir(parents=True)
        (root / "charts" / f"s{i}" / "templates" / "d.yaml").write_text("x")
        (root / "charts" / f"s{i}" / "values.yaml").write_text("x")
    (root / "Chart.yaml").write_text("x")


@pytest.mark.parametrize("n", [3, 40])
def test_removes_everything(tmp_path: Path, n: int) -> None:
    _tree(tmp_path / "t", n)
    remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_never_removes_what_a_link_points_at(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _tree(outside, 40)
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(OSError):
        remove_tree(tmp_path / "link")
    remove_tree(tmp_path / "link", ignore_errors=True)
    # a link among the subcharts, and one two levels down: removed, their targets kept
    t = tmp_path / "t"
    _tree(t, 40)
    (t / "charts" / "s0" / "evil").symlink_to(outside / "charts")
    (t / "charts" / "s9").rename(t / "moved")
    (t / "charts" / "s9").symlink_to(outside / "charts" / "s1")
    remove_tree(t)
    assert not t.exists()
    assert len(list((outside / "charts").iterdir())) == 40
    assert (outside / "charts" / "s1" / "templates" / "d.yaml").read_text() == "x"


def test_replace_dir_swaps_a_large_tree(tmp_path: Path) -> None:
    target = tmp_path / "helm"
    _tree(target, 40)
    with replace_dir(target) as tmp:
        (tmp / "new.yaml").write_text("y")
    assert [p.name for p in target.iterdir()] == ["new.yaml"]
    assert [p.name for p in tmp_path.iterdir()] == ["helm"]  # no .helm.old left behind
