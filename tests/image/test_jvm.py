"""The Java runtime of a base image, read from a root filesystem laid out as Debian's JRE."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from veil.errors import OperationalError
from veil.image.jvm import jvm_of_rootfs
from veil.runtime.measure import RUNTIME_PATHS, MeasurementPlan, measure


def _debian_jre(root: Path) -> Path:
    home = root / "usr/lib/jvm/java-17-openjdk-amd64"
    (home / "bin").mkdir(parents=True)
    (home / "lib").mkdir()
    (home / "bin/java").write_bytes(b"\x7fELF java")
    (home / "bin/java").chmod(0o755)
    (home / "lib/libjvm.so").write_bytes(b"\x7fELF jvm")
    (root / "etc/java-17-openjdk/security").mkdir(parents=True)
    (root / "etc/java-17-openjdk/security/java.security").write_text("policy\n")
    os.symlink("/etc/java-17-openjdk/jvm-amd64.cfg", home / "lib/jvm.cfg")
    (root / "etc/alternatives").mkdir(parents=True)
    os.symlink("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", root / "etc/alternatives/java")
    (root / "usr/bin").mkdir(parents=True)
    os.symlink("/etc/alternatives/java", root / "usr/bin/java")
    return home


def test_java_chain_jvm_and_its_configuration_are_found(tmp_path: Path) -> None:
    _debian_jre(tmp_path)
    jvm = jvm_of_rootfs(str(tmp_path))
    assert jvm.paths == ["/usr/bin/java", "/etc/alternatives/java", "/usr/lib/jvm",
                         "/etc/java-17-openjdk"]


@pytest.mark.parametrize("change", ["libjvm", "java.security", "alternative"])
def test_the_whole_root_filesystem_measurement_covers_the_jvm(tmp_path: Path,
                                                              change: str) -> None:
    home = _debian_jre(tmp_path)
    plan = MeasurementPlan(roots=["/"], command="java -jar app.jar", pwd="/java", local_env={},
                           exclude=list(RUNTIME_PATHS))
    before = measure(str(tmp_path), plan)
    if change == "libjvm":
        (home / "lib/libjvm.so").write_bytes(b"\x7fELF jvm\0")
    elif change == "java.security":
        (tmp_path / "etc/java-17-openjdk/security/java.security").write_text("policy=none\n")
    else:
        os.unlink(tmp_path / "etc/alternatives/java")
        os.symlink("/tmp/java", tmp_path / "etc/alternatives/java")
    assert measure(str(tmp_path), plan) != before


def test_no_java_is_an_operational_error(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(OperationalError, match="no Java runtime at /usr/bin/java"):
        jvm_of_rootfs(str(tmp_path))
