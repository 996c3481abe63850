"""`copy` entries and targets that would reach outside: refused, nothing written or replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.image.test_context import stage, write
from veil.cli import main
from veil.errors import ManifestError


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere" / "host-secret.txt"
    secret.parent.mkdir()
    secret.write_text("not for the image\n")
    return secret


def _refused(manifest: Path, out: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        stage(manifest, out)
    return info.value


@pytest.mark.parametrize("entry", ["../elsewhere/host-secret.txt", "/etc/passwd", "lib/../../x"])
def test_paths_that_leave_the_folder(tmp_path: Path, entry: str) -> None:
    manifest = write(tmp_path / "svc", copy=("app.py", entry))
    [p] = _refused(manifest, tmp_path / "out").problems
    assert p.path == "build.copy[1]" and p.line is not None
    assert "inside the manifest's directory" in p.message


def test_a_link_to_a_host_file(tmp_path: Path, outside: Path) -> None:
    svc = tmp_path / "svc"
    manifest = write(svc, copy=("app.py", "secret.txt"))
    (svc / "secret.txt").symlink_to(outside)
    [p] = _refused(manifest, tmp_path / "out").problems
    assert p.path == "build.copy[1]" and str(outside) in p.message
    assert not (tmp_path / "out" / "rootfs").exists()


def test_a_linked_folder_and_a_path_through_it(tmp_path: Path, outside: Path) -> None:
    svc = tmp_path / "svc"
    manifest = write(svc, copy=("data", "data/host-secret.txt"))
    (svc / "data").symlink_to(outside.parent)
    problems = _refused(manifest, tmp_path / "out").problems
    assert [p.path for p in problems] == ["build.copy[0]", "build.copy[1]"]


def test_a_link_deep_inside_a_copied_folder(tmp_path: Path, outside: Path) -> None:
    svc = tmp_path / "svc"
    manifest = write(svc, copy=("lib",))
    (svc / "lib" / "deep").mkdir()
    (svc / "lib" / "deep" / "s.txt").symlink_to(outside)
    [p] = _refused(manifest, tmp_path / "out").problems
    assert "lib/deep/s.txt" in p.message


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    svc = tmp_path / "svc"
    manifest = write(svc, copy=("app.py", "lib"))
    (svc / "lib" / "alias.py").symlink_to("util.py")
    ctx = stage(manifest, tmp_path / "out")
    staged = ctx.dir / "rootfs" / "app" / "lib" / "alias.py"
    assert staged.is_symlink() and os.readlink(staged) == "util.py"


def test_target_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(tmp_path / "svc")
    code = main(["apply", "-f", str(manifest), "--dry-run", "-t", str(manifest)])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "Traceback" not in err
    assert manifest.is_file()


def test_target_folder_with_the_users_files(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(tmp_path / "svc")
    mine = tmp_path / "mine" / "demo"  # demo: the service's build.name
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me\n")
    code = main(["apply", "-f", str(manifest), "--dry-run", "-t", str(tmp_path / "mine")])
    assert code == 2 and "veil did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me\n"
