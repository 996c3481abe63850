"""Injection files: only a file the launcher itself creates ever receives the content.

Each test plants what an attacker who controls the image's unmeasured paths (or the container's
mounts) would plant — a link at the target, a link on the way, a folder — and checks that the
content lands nowhere else.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from veil.runtime.files import FileRefusal, write_file
from veil.runtime.launcher import LaunchError, write_files
from veil.runtime.measure import RUNTIME_PATHS, MeasurementPlan

SECRET = b"pw=generated-by-cas"


def plan(*targets: str) -> MeasurementPlan:
    return MeasurementPlan(roots=["/"], command="x", pwd="/app", local_env={},
                           exclude=[*RUNTIME_PATHS, *targets])


def provisioned(path: str, mode: str = "0640") -> list[dict[str, str]]:
    return [{"path": path, "content": base64.b64encode(SECRET).decode(), "mode": mode}]


def test_files_are_written_with_their_mode_and_folders_created(tmp_path: Path) -> None:
    write_files(provisioned("/etc/app/x.conf"), plan("/etc/app/x.conf"), str(tmp_path))
    p = tmp_path / "etc/app/x.conf"
    assert p.read_bytes() == SECRET and (p.stat().st_mode & 0o7777) == 0o640
    assert (tmp_path / "etc/app").stat().st_mode & 0o777 == 0o755
    assert sorted(os.listdir(tmp_path / "etc/app")) == ["x.conf"]  # no temporary left


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app/x.conf").write_text("old")
    write_file(str(tmp_path), "/app/x.conf", SECRET, 0o600)
    assert (tmp_path / "app/x.conf").read_bytes() == SECRET


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "outside").write_text("host file")
    (tmp_path / "app/x.conf").symlink_to(tmp_path / "outside")
    write_file(str(tmp_path), "/app/x.conf", SECRET, 0o600)
    assert (tmp_path / "outside").read_text() == "host file"
    assert not (tmp_path / "app/x.conf").is_symlink()
    assert (tmp_path / "app/x.conf").read_bytes() == SECRET


def test_a_link_on_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "app").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileRefusal, match="/app is not a folder of the image"):
        write_file(str(tmp_path), "/app/x.conf", SECRET, 0o600)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_folder_at_the_target_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    (tmp_path / "app/x.conf").mkdir(parents=True)
    with pytest.raises(LaunchError, match=re.escape("refusing to start: cannot write /app/x.conf")):
        write_files(provisioned("/app/x.conf"), plan("/app/x.conf"), str(tmp_path))
    assert os.listdir(tmp_path / "app") == ["x.conf"]
    assert list((tmp_path / "app/x.conf").iterdir()) == []


def test_a_file_the_image_measures_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=re.escape("/app/main.py, which this image measures")):
        write_files(provisioned("/app/main.py"), plan("/app/x.conf"), str(tmp_path))
    assert not (tmp_path / "app").exists()
    # runtime paths are never measured: a file there needs no exclusion of its own
    write_files(provisioned("/run/app/x.conf"), plan(), str(tmp_path))
    assert (tmp_path / "run/app/x.conf").read_bytes() == SECRET


@pytest.mark.parametrize("path", ["relative/x", "/", "/app/../"])
def test_paths_that_are_no_file_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises((FileRefusal, LaunchError)):
        write_files(provisioned(path), plan(path), str(tmp_path))


def test_a_file_right_under_the_root_is_written(tmp_path: Path) -> None:
    write_file(str(tmp_path), "/token", b"t0ken", 0o600)
    assert (tmp_path / "token").read_bytes() == b"t0ken"
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary file left


def test_the_new_file_is_private_until_it_gets_its_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between creation and chmod the content is already there: nobody but the owner may
    read it then, whatever mode it gets afterwards."""
    seen: list[int] = []
    real = os.fchmod

    def spy(fd: int, mode: int) -> None:
        seen.append(os.fstat(fd).st_mode & 0o7777)
        real(fd, mode)

    monkeypatch.setattr(os, "fchmod", spy)
    old = os.umask(0)  # the mode asked for at creation, not what a umask leaves of it
    try:
        write_file(str(tmp_path), "/etc/app/key", b"k", 0o644)
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert (tmp_path / "etc/app/key").stat().st_mode & 0o777 == 0o644
