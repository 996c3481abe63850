"""A mesh whose services' descriptions are not in the local index: read from the registry.

The image is built and pushed by `veil apply` into the real test registry; the local index is
then emptied (a second machine, a CI job), and the mesh is applied from image names alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.image.support import hello_service, need
from veil.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: 127.0.0.1:8081
policy:
  namespace: registry-only
services:
{services}
env:
  - name: API_USER
    value: someone
"""


def mesh(dir: Path, *images: str) -> Path:
    services = "".join(f"  - name: svc{i}\n    image: {img}\n" for i, img in enumerate(images))
    path = dir / "mesh.yaml"
    path.write_text(MESH.format(services=services))
    return path


@pytest.fixture(scope="module")
def pushed(registry: str, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """hello-user built and pushed by `veil apply`; the local index that recorded it is gone."""
    need("buildah")
    tmp = tmp_path_factory.mktemp("mesh-registry")
    manifest = hello_service(tmp / "src", registry, base_image, name="meshreg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(tmp / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(tmp / "config"))
        mp.chdir(tmp / "src")
        assert main(["apply", "-f", str(manifest)]) == 0
    shutil.rmtree(tmp / "home")
    return f"{registry}/test/meshreg:1"


def test_mesh_reads_descriptions_from_the_registry(
    pushed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = mesh(tmp_path, pushed)
    code = main(["apply", "-f", str(m), "--dry-run", "-t", str(tmp_path / "target")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "registry-only/svc0" in out and "password" in out  # the secret it declares
    code = main(["env", "explain", "-f", str(m), "svc0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "API_USER" in out and "someone" in out and "SCONE_LOG" in out
    bare = tmp_path / "bare.yaml"  # no env: --print-defaults lists what the image declares
    bare.write_text(m.read_text().split("env:")[0])
    code = main(["apply", "-f", str(bare), "--print-defaults"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "- name: API_USER  # declared by: svc0" in out


def test_images_in_neither_place_are_listed_together(
    pushed: str, registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = f"{registry}/test/never-pushed:1"
    unreachable = "127.0.0.1:9/test/nowhere:1"  # discard port: nothing listens
    m = mesh(tmp_path, pushed, absent, unreachable)
    code = main(["apply", "-f", str(m), "--dry-run", "-t", str(tmp_path / "target")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "2 images of" in err
    for image, line in ((absent, 13), (unreachable, 15)):
        hit = [ln for ln in err.splitlines() if image in ln and f"mesh.yaml:{line}:" in ln]
        assert hit, err
        assert "local index" in hit[0] and "registry" in hit[0]
    assert "never-pushed" in err and "not found" in err
    assert "Traceback" not in err
