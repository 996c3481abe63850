"""The launcher's refusals before measuring: loader and interpreter variables, preloaded
libraries, mounts over measured paths — each named, each before CAS is asked for anything.

The launcher reads /proc/self under the root it is given; these tests hand it a prepared one
and talk to the in-test CAS of test_launcher.py, which counts the requests it gets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.image_root import CLEAN_MAPS, CLEAN_MOUNTINFO, make_image_root, write_proc
from tests.runtime.test_launcher import FakeCas, env_for
from veil.runtime.guard import (
    Mount,
    foreign_mounts,
    injected_variables,
    parse_mountinfo,
    preloaded_libraries,
    unmeasured_mappings,
)
from veil.runtime.launcher import LaunchError, provision


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    return make_image_root(tmp_path, exclude=("/app/conf/app.conf",),
                           host_paths=("/etc/ssl/certs",))


@pytest.fixture
def cas(tmp_path: Path, image: tuple[Path, str]) -> Iterator[FakeCas]:
    (tmp_path / "cas").mkdir()
    server = FakeCas(tmp_path / "cas", image[1])
    yield server
    server.close()


def test_a_clean_container_starts(image: tuple[Path, str], cas: FakeCas) -> None:
    assert provision(env_for(cas), str(image[0])).argv == ["true"]
    assert cas.requests == 2


@pytest.mark.parametrize("name", [
    "LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "LD_BIND_NOW", "PYTHONPATH", "PYTHONHOME",
    "PYTHONSTARTUP", "PYTHONUNBUFFERED", "PYTHON_GIL", "GCONV_PATH", "GLIBC_TUNABLES",
    "OPENSSL_CONF",
])
def test_loader_and_interpreter_variables_are_refused_by_name(
    image: tuple[Path, str], cas: FakeCas, name: str
) -> None:
    with pytest.raises(LaunchError, match=f"refusing to start: the container sets {name},"):
        provision({**env_for(cas), name: "/tmp/evil"}, str(image[0]))
    assert cas.requests == 0


def test_a_variable_hidden_from_os_environ_is_found_in_the_initial_environment(
    image: tuple[Path, str], cas: FakeCas
) -> None:
    root = image[0]
    write_proc(root, environ={"PATH": "/usr/bin", "LD_PRELOAD": "/tmp/x.so"})
    with pytest.raises(LaunchError, match="LD_PRELOAD"):
        provision(env_for(cas), str(root))
    assert cas.requests == 0


def test_inert_python_image_variables_are_allowed() -> None:
    assert injected_variables(["PYTHON_VERSION", "PYTHON_SHA256", "PATH", "HOSTNAME",
                               "LANG"]) == []
    assert injected_variables(["PYTHONPATH", "LD_X", "PYTHON_VERSION"]) == ["LD_X", "PYTHONPATH"]


def test_ld_so_preload_is_refused(image: tuple[Path, str], cas: FakeCas) -> None:
    root = image[0]
    (root / "etc/ld.so.preload").write_text("# tuning\n/usr/lib/libevil.so\n")
    with pytest.raises(LaunchError,
                       match=re.escape("/etc/ld.so.preload loads /usr/lib/libevil.so")):
        provision(env_for(cas), str(root))
    assert cas.requests == 0
    (root / "etc/ld.so.preload").write_text("# nothing\n\n")
    assert preloaded_libraries("a.so:b.so c.so # d.so") == ["a.so", "b.so", "c.so"]


@pytest.mark.parametrize("path", [
    "/tmp/libevil.so", "/dev/shm/x.so", "/usr/lib/libgone.so (deleted)",
    "/memfd:payload (deleted)", "/app/conf/app.conf",
])
def test_an_unmeasured_library_in_the_launchers_process_is_refused(
    image: tuple[Path, str], cas: FakeCas, path: str
) -> None:
    root = image[0]
    write_proc(root, maps=CLEAN_MAPS + f"7f1000000000-7f1000001000 r-xp 00000000 00:28 9 {path}\n")
    with pytest.raises(LaunchError, match="unmeasured files mapped .*" + path.split(" ")[0]):
        provision(env_for(cas), str(root))
    assert cas.requests == 0


def test_measured_libraries_and_anonymous_mappings_are_fine() -> None:
    assert unmeasured_mappings(CLEAN_MAPS, ["/app/x"]) == []


@pytest.mark.parametrize("point,shown", [
    ("/python", "/python"), ("/usr/lib/python3.11", "/usr/lib/python3.11"),
    ("/etc/ld.so.preload", "/etc/ld.so.preload"), ("/app/conf/app.conf", "/app/conf/app.conf"),
    (r"/my\040data", "/my data"),
])
def test_a_mount_over_a_measured_path_is_refused_by_name(
    image: tuple[Path, str], cas: FakeCas, point: str, shown: str
) -> None:
    root = image[0]
    extra = f"90 73 254:0 /home/x {point} rw,relatime shared:1 - ext4 /dev/vda rw\n"
    write_proc(root, mountinfo=CLEAN_MOUNTINFO + extra)
    with pytest.raises(LaunchError, match=f"{shown} is a separate mount \\(ext4 from /dev/vda\\)"):
        provision(env_for(cas), str(root))
    assert cas.requests == 0


def test_mounts_under_runtime_paths_are_fine() -> None:
    mounts = parse_mountinfo(CLEAN_MOUNTINFO + "91 73 0:50 / /tmp/cache rw - tmpfs tmpfs rw\n"
                             "92 73 0:51 / /run/secrets rw - tmpfs tmpfs rw\n")
    assert Mount("/", "overlay", "overlay") in mounts
    assert foreign_mounts(mounts) == []
    # a runtime path's name as a prefix is not enough
    assert foreign_mounts(parse_mountinfo("9 1 0:5 / /tmpx rw - ext4 /dev/vda rw\n")) == [
        Mount("/tmpx", "ext4", "/dev/vda")]


def test_everything_found_is_named_at_once(image: tuple[Path, str], cas: FakeCas) -> None:
    root = image[0]
    write_proc(root, mountinfo=CLEAN_MOUNTINFO + "90 73 254:0 / /app rw - ext4 /dev/vda rw\n")
    with pytest.raises(LaunchError) as err:
        provision({**env_for(cas), "PYTHONPATH": "/tmp"}, str(root))
    assert "PYTHONPATH" in str(err.value) and "/app is a separate mount" in str(err.value)


def test_unreadable_proc_is_a_refusal(image: tuple[Path, str], cas: FakeCas) -> None:
    root = image[0]
    (root / "proc/self/mountinfo").unlink()
    with pytest.raises(LaunchError, match="cannot read /proc/self/mountinfo"):
        provision(env_for(cas), str(root))
    assert cas.requests == 0


def test_a_mount_at_a_declared_host_path_is_accepted_and_nowhere_else(
    image: tuple[Path, str], cas: FakeCas
) -> None:
    root = image[0]
    certs = "90 73 254:0 /etc/ssl/certs /etc/ssl/certs ro - ext4 /dev/vda rw\n"
    write_proc(root, mountinfo=CLEAN_MOUNTINFO + certs)
    assert provision(env_for(cas), str(root)).argv == ["true"]
    wider = certs.replace(" /etc/ssl/certs ro", " /etc/ssl ro")
    write_proc(root, mountinfo=CLEAN_MOUNTINFO + wider)
    with pytest.raises(LaunchError, match="/etc/ssl is a separate mount"):
        provision(env_for(cas), str(root))


def test_mountinfo_is_read_field_by_field() -> None:
    """proc(5): ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER, with
    space, tab, newline and backslash written as octal escapes. A line that is not one is
    skipped, and the lines after it still count."""
    text = (
        "short line\n"
        "39 35 98:0 / /no-separator rw shared:1 ext4 /dev/x rw extra\n"  # 10 fields, no "-"
        "40 35 98:0 / /nine rw - ext4 /dev/y\n"  # 9 fields: no super options
        "36 35 98:0 /mnt1 /mnt/my\\040data\\134x rw,noatime master:1 - ext3 /dev/my\\011disk rw\n"
        "37 35 98:0 / /data1234 rw - ext4 /dev/a\\x12 rw\n"  # digits, and a backslash, unescaped
        "38 35 98:0 / /o rw shared:1 master:2 - xfs /dev/sdb rw\n"
    )
    assert parse_mountinfo(text) == [
        Mount("/mnt/my data\\x", "ext3", "/dev/my\tdisk"),
        Mount("/data1234", "ext4", "/dev/a\\x12"),
        Mount("/o", "xfs", "/dev/sdb"),
    ]


def test_a_proc_file_that_cannot_be_read_is_a_refusal(image: tuple[Path, str],
                                                      cas: FakeCas) -> None:
    root = image[0]
    (root / "proc/self/mountinfo").unlink()
    (root / "proc/self/mountinfo").mkdir()
    with pytest.raises(LaunchError, match="cannot read /proc/self/mountinfo: Is a directory"):
        provision(env_for(cas), str(root))
    assert cas.requests == 0


@pytest.mark.parametrize("name", ["GCONV_PATH", "LD_PRELOAD", "PYTHONSTARTUP"])
def test_a_hidden_variable_is_named_without_its_value(
    image: tuple[Path, str], cas: FakeCas, name: str
) -> None:
    root = image[0]
    write_proc(root, environ={"PATH": "/usr/bin", name: "/tmp/x=secret-ish"})
    with pytest.raises(LaunchError, match=f"the container sets {name}, which") as err:
        provision(env_for(cas), str(root))
    assert "secret-ish" not in str(err.value)
    assert cas.requests == 0
