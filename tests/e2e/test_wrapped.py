"""A genservice with `build.wrap`: a bare customer repository becomes an attested Flask service.

`veil apply` wraps the repository (entrypoint checked at apply time), builds and pushes the image;
its session comes from `veil apply -f mesh.yaml`; podman starts it through the launcher, which
attests to the real CAS before the wrapper serves predictions.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Cas
from tests.e2e.meshes import mesh_apply
from tests.image.support import need, wait_ready
from veil.cli import main
from veil.image.index import LocalIndex
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "customer-repo"


def _repo(tmp: Path, registry: str, base: str, entrypoint: str) -> Path:
    repo = tmp / "repo"
    shutil.copytree(EXAMPLE_REPO, repo)
    (repo / "service.yaml").write_text(f"""\
apiVersion: scone/5.8
kind: genservice
environment:
  global:
    - name: HTTP_PORT
      value: "8080"
build:
  name: wrapped-model
  to: {registry}/test/wrapped-model:1
  from: {base}
  wrap: flask
  entrypoint: {entrypoint}
""")
    return repo


def test_wrap_in_manifest_completes_the_description(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need("buildah")
    repo = _repo(tmp_path, registry, base_image, "model:Classifier")
    monkeypatch.chdir(repo)
    assert main(["apply", "-f", "service.yaml", "--dry-run"]) == 0, capsys.readouterr().err
    entry = LocalIndex().get(f"{registry}/test/wrapped-model:1")
    assert entry is not None
    d = entry.description
    assert d.command == "python3 -m veil_runner flask" and d.wrap == "flask"
    assert {e.name: e.value for e in d.local_env} == {"VEIL_ENTRYPOINT": "model:Classifier"}
    inputs = {e.name: e.value for e in d.global_env}
    assert inputs["HTTP_PORT"] == "8080"  # the manifest's own declaration is kept
    assert inputs["MAX_REQUEST_BYTES"] == "1048576" and "WEB_CONCURRENCY" in inputs
    staged = repo / "target" / "wrapped-model"
    # a dry run has no base image: the measurement is taken by the build
    assert (staged / "Containerfile").exists() and d.measurement is None


def test_wrong_entrypoint_fails_at_apply_time(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = _repo(tmp_path, registry, base_image, "model:nothing_here")
    monkeypatch.chdir(repo)
    assert main(["apply", "-f", "service.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "nothing_here" in err and "model.py" in err
    assert not (repo / "target" / "wrapped-model").exists()


def test_wrapped_service_serves_only_after_attestation(
    registry: str, base_image: str, cas: Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need("buildah", "podman")
    repo = _repo(tmp_path, registry, base_image, "model:Classifier")
    monkeypatch.chdir(repo)
    assert main(["apply", "-f", "service.yaml"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    port = free_port()
    ids = mesh_apply(tmp_path / "mesh", cas, "wrapns",
                     {"model": f"{registry}/test/wrapped-model:1"},
                     {"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "WEB_CONCURRENCY": "1"})
    name = f"veil-e2e-wrapped-{port}"
    run = subprocess.run(
        ["podman", "run", "-d", "--rm", "--init", "--tls-verify=false", "--name", name,
         "--network", "host", "-e", f"SCONE_CONFIG_ID={ids['model']}",
         "-e", f"SCONE_CAS_ADDR={cas.addr}", "-e", f"SCONE_CAS_KEY={cas.key}",
         f"{registry}/test/wrapped-model:1"],
        capture_output=True, text=True, env=container_env(), check=False,
    )
    assert run.returncode == 0, run.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/ready", name, timeout=60)
        r = httpx.post(url + "/predict", json={"x": 42})
        assert (r.status_code, r.json()) == (200, {"label": "large", "x": 42.0})
    finally:
        subprocess.run(["podman", "stop", "-t", "5", name], capture_output=True,
                       env=container_env(), check=False)


KAFKA_CHECK = r"""
import os, sys
import confluent_kafka, veil_runner  # noqa: F401  the wrapper and its native client
p = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:9", "security.protocol": "ssl",
                              "message.timeout.ms": 500})
failed = []
p.produce("t", b"x", on_delivery=lambda err, msg: failed.append(err is not None))
p.flush(5)  # no broker there: librdkafka (TLS included) runs and reports the message failed
print("failed", failed, "shell", os.path.exists("/bin/sh"))
"""


def test_kafka_wrapped_service_runs_its_native_client_on_the_runtime_base(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """confluent-kafka's manylinux wheel (librdkafka with its own OpenSSL) loads and runs in an
    image with no shell and only the runtime's libraries."""
    need("buildah", "podman")
    repo = _repo(tmp_path, registry, base_image, "model:Classifier")
    (repo / "service.yaml").write_text((repo / "service.yaml").read_text()
                                       .replace("wrap: flask", "wrap: kafka")
                                       .replace("wrapped-model", "wrapped-kafka"))
    monkeypatch.chdir(repo)
    assert main(["apply", "-f", "service.yaml", "--no-push"]) == 0, capsys.readouterr().err
    proc = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--entrypoint", "/usr/bin/python3",
         f"{registry}/test/wrapped-kafka:1", "-B", "-c", KAFKA_CHECK],
        capture_output=True, text=True, env=container_env(), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["failed", "[True]", "shell", "False"], proc.stdout
