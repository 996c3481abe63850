"""End to end: image → `veil apply -f mesh.yaml` → podman run → attested program.

Real registry, buildah, podman and CAS (`veil cas serve`); the session comes from mesh apply, as
a user's would; the launcher inside the image attests with simulation evidence to a debug-mode
session.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cas
from tests.e2e.meshes import mesh_apply
from tests.image.support import hello_service, need
from veil.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def veil(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc = main(list(args))
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err
    return cap.out


def build(capsys: pytest.CaptureFixture[str], manifest: Path) -> dict[str, object]:
    veil(capsys, "apply", "-f", str(manifest))
    image = next(ln.split("to: ", 1)[1] for ln in manifest.read_text().splitlines()
                 if ln.strip().startswith("to: "))
    desc: dict[str, object] = json.loads(veil(capsys, "inspect", image.strip()))
    return desc


def podman_run(image: str, cas: Cas, config_id: str, *extra: str
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "run", "--rm", "--init", "--tls-verify=false", *extra,
         "-e", f"SCONE_CONFIG_ID={config_id}", "-e", f"SCONE_CAS_ADDR={cas.addr}",
         "-e", f"SCONE_CAS_KEY={cas.key}", image],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def hello(registry: str, base_image: str, cas: Cas, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Path, str]]:
    """The hello-user image built and its debug session created: (source dir, config id)."""
    need("buildah", "podman")
    tmp = tmp_path_factory.mktemp("e2e")
    manifest = hello_service(tmp / "src", registry, base_image, name="e2e-hello")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(tmp / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(tmp / "config"))
        mp.chdir(tmp / "src")
        assert main(["apply", "-f", str(manifest)]) == 0
        desc = json.loads((tmp / "src/target/e2e-hello/description.json").read_text())
        # the mesh finds what the image itself carries (what `veil inspect` prints)
        from veil.image.describe import description_of

        assert json.loads(description_of(f"{registry}/test/e2e-hello:1").to_json()) == desc
        ids = mesh_apply(tmp / "mesh", cas, "e2e", {"hello": f"{registry}/test/e2e-hello:1"},
                         {"API_USER": "myself"})
        yield tmp / "src", ids["hello"]


def checksum_line(out: str) -> str:
    return next(ln for ln in out.splitlines() if "checksum" in ln)


def test_program_gets_its_provisioned_configuration(hello: tuple[Path, str], registry: str,
                                                    cas: Cas) -> None:
    _, config_id = hello
    proc = podman_run(f"{registry}/test/e2e-hello:1", cas, config_id)
    assert proc.returncode == 0, proc.stderr
    assert "Hello myself" in proc.stdout
    line = checksum_line(proc.stdout)
    assert len(line.rsplit(" ", 1)[1]) == 64
    # the password CAS generated is kept: a second start sees the same one
    again = podman_run(f"{registry}/test/e2e-hello:1", cas, config_id)
    assert checksum_line(again.stdout) == line


def test_container_env_cannot_override_provisioned_values(hello: tuple[Path, str],
                                                          registry: str, cas: Cas) -> None:
    _, config_id = hello
    plain = podman_run(f"{registry}/test/e2e-hello:1", cas, config_id)
    forced = podman_run(f"{registry}/test/e2e-hello:1", cas, config_id,
                        "-e", "API_PASSWORD=x", "-e", "API_USER=mallory")
    assert forced.returncode == 0, forced.stderr
    assert "Hello myself" in forced.stdout and "mallory" not in forced.stdout
    assert checksum_line(forced.stdout) == checksum_line(plain.stdout)
    assert hashlib.sha256(b"x").hexdigest() not in forced.stdout


def _tampered(src: Path, registry: str, base: str, name: str, *, program_suffix: str = "",
              command: str | None = None) -> Path:
    program = (src / "print_env.py").read_text() + program_suffix
    manifest = hello_service(src.parent / name, registry, base, name="e2e-hello",
                             program=program)
    text = manifest.read_text().replace("/test/e2e-hello:1", f"/test/e2e-hello:{name}")
    if command:
        text = text.replace("command: python3 print_env.py", f"command: {command}")
    manifest.write_text(text)
    return manifest


@pytest.mark.parametrize("change", ["one-byte", "command"])
def test_changed_image_is_refused(hello: tuple[Path, str], registry: str, base_image: str,
                                  cas: Cas, change: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    src, config_id = hello
    if change == "one-byte":
        manifest = _tampered(src, registry, base_image, change, program_suffix="#")
    else:
        manifest = _tampered(src, registry, base_image, change,
                             command="python3 -c 'import os; print(os.environ)'")
    monkeypatch.chdir(manifest.parent)
    build(capsys, manifest)
    proc = podman_run(f"{registry}/test/e2e-hello:{change}", cas, config_id)
    assert proc.returncode != 0
    assert "Hello" not in proc.stdout and "API_PASSWORD" not in proc.stdout
    assert "veil-launcher: CAS refused to configure e2e/hello/hello" in proc.stderr
    assert "measurement" in proc.stderr


def test_container_arguments_are_refused(hello: tuple[Path, str], registry: str,
                                         cas: Cas) -> None:
    _, config_id = hello
    proc = subprocess.run(
        ["podman", "run", "--rm", "--init", "--tls-verify=false",
         "-e", f"SCONE_CONFIG_ID={config_id}", "-e", f"SCONE_CAS_ADDR={cas.addr}",
         "-e", f"SCONE_CAS_KEY={cas.key}", f"{registry}/test/e2e-hello:1", "python3", "-c", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode != 0
    assert "container arguments are not accepted" in proc.stderr


def test_wrong_cas_key_is_refused(hello: tuple[Path, str], registry: str, cas: Cas) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    _, config_id = hello
    wrong = Cas(cas.addr, base64.b64encode(other).decode(), cas.state_dir)
    proc = podman_run(f"{registry}/test/e2e-hello:1", wrong, config_id)
    assert proc.returncode != 0
    assert "does not hold the pinned CAS key" in proc.stderr
    assert "Hello" not in proc.stdout


def test_production_session_refuses_simulation(hello: tuple[Path, str], registry: str,
                                               cas: Cas, tmp_path: Path) -> None:
    # another client (this test's identity) owns another namespace
    ids = mesh_apply(tmp_path, cas, "e2e-prod", {"hello-prod": f"{registry}/test/e2e-hello:1"},
                     {"API_USER": "myself"}, mode="production")
    proc = podman_run(f"{registry}/test/e2e-hello:1", cas, ids["hello-prod"])
    assert proc.returncode != 0
    assert "simulation evidence is not accepted in production mode" in proc.stderr


PROGRAM_WITH_FILE = """\
import hashlib, os, stat
data = open("/python/conf/app.conf", "rb").read()
mode = stat.S_IMODE(os.stat("/python/conf/app.conf").st_mode)
print("file", oct(mode), hashlib.sha256(data).hexdigest(), flush=True)
print("env", hashlib.sha256(b"pw=" + os.environ["API_PASSWORD"].encode()).hexdigest(), flush=True)
"""


def test_injection_files_are_written_before_the_program_starts(
    registry: str, base_image: str, cas: Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = hello_service(tmp_path, registry, base_image, name="e2e-files",
                             program=PROGRAM_WITH_FILE)
    manifest.write_text(manifest.read_text() + """\
injection_files:
  - path: /python/conf/app.conf
    content: "pw=$$SCONE::password$$"
    permission: "0640"
""")
    monkeypatch.chdir(tmp_path)
    build(capsys, manifest)
    ids = mesh_apply(tmp_path / "mesh", cas, "e2e-files",
                     {"files": f"{registry}/test/e2e-files:1"}, {"API_USER": "myself"})
    proc = podman_run(f"{registry}/test/e2e-files:1", cas, ids["files"])
    assert proc.returncode == 0, proc.stderr
    lines = dict(ln.split(" ", 1) for ln in proc.stdout.splitlines())
    mode, file_sum = lines["file"].split()
    assert mode == "0o640"
    # the file holds the same CAS-generated password the environment got, never the reference
    assert file_sum == lines["env"]
    assert "SCONE::" not in proc.stdout
