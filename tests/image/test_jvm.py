"""The Java runtime's measured roots, read from a root filesystem laid out as Debian's JRE."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from veil.errors import OperationalError
from veil.image.jvm import jvm_of_rootfs


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


def test_java_chain_jvm_and_its_configuration_are_measured(tmp_path: Path) -> None:
    _debian_jre(tmp_path)
    jvm = jvm_of_rootfs(str(tmp_path))
    assert jvm.paths == ["/usr/bin/java", "/etc/alternatives/java", "/usr/lib/jvm",
                         "/etc/java-17-openjdk"]
    paths = {e.path: e.mode for e in jvm.entries}
    assert paths["/usr/bin/java"] == "link" and paths["/etc/alternatives/java"] == "link"
    assert paths["/usr/lib/jvm/java-17-openjdk-amd64/lib/libjvm.so"] == "0644"
    assert paths["/usr/lib/jvm/java-17-openjdk-amd64/lib/jvm.cfg"] == "link"
    assert "/etc/java-17-openjdk/security/java.security" in paths


def test_a_changed_jvm_file_changes_its_entries(tmp_path: Path) -> None:
    home = _debian_jre(tmp_path)
    before = jvm_of_rootfs(str(tmp_path)).entries
    (home / "lib/libjvm.so").write_bytes(b"\x7fELF jvm\0")
    assert jvm_of_rootfs(str(tmp_path)).entries != before


def test_no_java_is_an_operational_error(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(OperationalError, match="no Java runtime at /usr/bin/java"):
        jvm_of_rootfs(str(tmp_path))
