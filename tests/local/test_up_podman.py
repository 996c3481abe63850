"""`veil up` for real: registry, buildah, podman, a local CAS started by `veil up`, the launcher.

The seeds' hello-user service (its greeting and the checksum of the CAS-generated password),
then the same service rebuilt with one changed byte: refused by CAS, the program never starts.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.support import hello_service, need
from veil.cli import main
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: 127.0.0.1:9
    tolerance: "--only_for_testing-debug"
policy:
  namespace: {namespace}
services:
  - name: pythonapp
    image: {image}
env:
  - name: API_USER
    value: myself
"""


def veil(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out + cap.err


# container and network names are global on the machine: a name of this run's own
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("up")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(home / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(home / "config"))
        yield home
        for mesh in home.glob("*.yaml"):
            main(["down", "-f", str(mesh), "--volumes"])


@pytest.fixture(autouse=True)
def _same_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_HOME", str(home / "home"))
    monkeypatch.setenv("VEIL_CONFIG_DIR", str(home / "config"))


def _build(capsys: pytest.CaptureFixture[str], home: Path, registry: str, base: str,
           name: str, program: str | None = None) -> str:
    need("buildah", "podman")
    manifest = hello_service(home / name, registry, base, name=name, program=program)
    code, text = veil(capsys, "apply", "-f", str(manifest), "-t", str(home / name / "target"))
    assert code == 0, text
    return f"{registry}/test/{name}:1"


def test_hello_user_greets_with_the_cas_password(
        registry: str, base_image: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = _build(capsys, home, registry, base_image, "up-hello")
    mesh = home / "mesh.yaml"
    mesh.write_text(MESH.format(namespace=f"up-hello-{RUN}", image=image))
    code, text = veil(capsys, "up", "-f", str(mesh), "--mode", "debug", "-t",
                      str(home / "target"))
    assert code == 0, text
    assert "started a local CAS" in text
    code, out = veil(capsys, "logs", "--mesh", str(mesh), "pythonapp")
    assert code == 0, out
    assert "Hello myself" in out
    line = next(ln for ln in out.splitlines() if "password" in ln.lower())
    assert "myself" not in line
    code, table = veil(capsys, "ps", "-f", str(mesh))
    assert code == 0 and "pythonapp" in table and "done" in table and "yes" in table
    # again: unchanged, kept (not restarted)
    code, text = veil(capsys, "up", "-f", str(mesh), "--mode", "debug", "-t",
                      str(home / "target"))
    assert code == 0, text
    assert "1 unchanged" in text and "starting pythonapp" not in text


def test_one_changed_byte_is_refused_and_never_runs(
        registry: str, base_image: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The attacker's image: the built one with one byte more in the program, pushed under
    another tag; it still carries the original's description (the label buildah keeps), so
    mesh apply derives a session that names the original measurement."""
    good = _build(capsys, home, registry, base_image, "up-tamper")
    bad = good.replace(":1", ":tampered")
    env = container_env()

    def buildah(*args: str) -> str:
        p = subprocess.run(["buildah", *args], env=env, capture_output=True, text=True,
                           check=True)
        return p.stdout.strip()

    cid = buildah("from", "--pull-never", good)
    try:
        mnt = buildah("mount", cid)
        with open(f"{mnt}/python/print_env.py", "a") as f:
            f.write("#")
        buildah("commit", "-q", cid, bad)
    finally:
        buildah("rm", cid)
    buildah("push", "--tls-verify=false", bad)
    mesh = home / "tamper.yaml"
    mesh.write_text(MESH.format(namespace=f"up-tamper-{RUN}", image=bad))
    code, text = veil(capsys, "up", "-f", str(mesh), "--mode", "debug", "-t",
                      str(home / "target"))
    assert code == 1, text
    assert "service pythonapp: refused, the program never started" in text
    assert "measurement" in text  # CAS's reason, as the launcher printed it
    code, out = veil(capsys, "logs", "--mesh", str(mesh), "pythonapp")
    assert "Hello" not in out and "veil-launcher:" in out
    code, table = veil(capsys, "ps", "-f", str(mesh))
    assert "failed" in table and " no " in table
    assert veil(capsys, "down", "-f", str(mesh))[0] == 0
    assert veil(capsys, "ps", "-f", str(mesh))[1].startswith("no services")
