"""A Java service end to end: `veil base create java`, a jar built with Debian's JDK,
`build.kind: java17`, `command: java -jar app.jar` attested and run behind the launcher.

Real registry, buildah, podman and CAS. As an attacker, a JVM altered in the built image (one
class-library file) is refused by CAS; the unaltered image, the control, gets its secrets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cas
from tests.e2e.meshes import mesh_apply
from tests.e2e.test_tamper import podman_run
from tests.image.support import need
from veil.cli import main
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "java-hello"


@pytest.fixture(scope="module")
def java_base(registry: str) -> str:
    need("buildah", "debootstrap")
    from veil.image.base import create_base

    ref = f"{registry}/veil/java:17-bookworm"
    cache = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
    create_base("java", ref, cache=cache)
    return ref


@pytest.fixture(scope="module")
def java_hello(registry: str, java_base: str, cas: Cas,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The example built from source with javac and applied; its debug session created."""
    need("buildah", "podman", "javac", "jar")
    tmp = tmp_path_factory.mktemp("java")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(EXAMPLE / "PrintEnv.java", src)
    subprocess.run(["javac", "--release", "17", "-d", "classes", "PrintEnv.java"], cwd=src,
                   check=True, capture_output=True)
    subprocess.run(["jar", "--create", "--file", "app.jar", "--main-class", "PrintEnv",
                    "-C", "classes", "."], cwd=src, check=True, capture_output=True)
    (src / "service.yaml").write_text(
        (EXAMPLE / "service.yaml").read_text()
        .replace("127.0.0.1:5000/veil/java_hello_user:latest", f"{registry}/test/java-hello:1")
        .replace("  pwd: /java", f"  from: {java_base}\n  pwd: /java"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(tmp / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(tmp / "config"))
        mp.chdir(src)
        assert main(["apply", "-f", "service.yaml"], prog="sconectl") == 0
        desc = json.loads((src / "target/java_hello_user/description.json").read_text())
        assert desc["kind"] == "java17" and desc["argv"] == ["java", "-jar", "app.jar"]
        ids = mesh_apply(tmp / "mesh", cas, "e2e-java",
                         {"java": f"{registry}/test/java-hello:1"}, {"API_USER": "myself"})
        yield src, ids["java"]


def test_java_program_runs_behind_the_launcher(java_hello: tuple[Path, str], registry: str,
                                               cas: Cas) -> None:
    _, config_id = java_hello
    proc = podman_run(f"{registry}/test/java-hello:1", cas, config_id)
    assert proc.returncode == 0, proc.stderr
    assert "Hello myself" in proc.stdout
    checksum = next(ln for ln in proc.stdout.splitlines() if "checksum" in ln)
    assert len(checksum.rsplit(" ", 1)[1]) == 64


def test_the_jvm_is_measured(java_hello: tuple[Path, str], registry: str, cas: Cas) -> None:
    """An attacker who can push images alters one file of the JVM's class library."""
    _, config_id = java_hello
    env = container_env()
    what = ["buildah", "from", "--pull-never", f"{registry}/test/java-hello:1"]
    cid = subprocess.run(what, capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    try:
        mnt = subprocess.run(["buildah", "mount", cid], capture_output=True, text=True, env=env,
                             check=True).stdout.strip()
        [home] = [d for d in Path(mnt, "usr/lib/jvm").iterdir()
                  if d.is_dir() and not d.is_symlink()]
        lib = home / "lib" / "libjava.so"
        assert not lib.is_symlink()  # never write through a link to the host's own files
        lib.write_bytes(lib.read_bytes() + b"\0")  # still a loadable ELF file
        subprocess.run(["buildah", "commit", "-q", cid, f"{registry}/test/java-hello:evil"],
                       capture_output=True, env=env, check=True)
    finally:
        subprocess.run(["buildah", "rm", cid], capture_output=True, env=env, check=False)
    proc = podman_run(f"{registry}/test/java-hello:evil", cas, config_id)
    assert proc.returncode != 0
    assert "Hello" not in proc.stdout
    assert f"CAS refused to configure {config_id}" in proc.stderr
