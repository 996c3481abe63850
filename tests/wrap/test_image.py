"""A wrapped repository all the way to a running container: `veil wrap flask`, `veil apply` of
the service manifest it wrote (buildah, wheels resolved on the host), then podman runs the
image's wrapper and it answers over HTTP.

The image's own entrypoint is the attesting launcher, which needs a CAS; that path is tested in
tests/e2e. Here the container runs the wrapper command directly, to test what the wrapper adds.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.image.support import need, wait_ready
from tests.wrap.conftest import EXAMPLE_REPO
from veil.cli import main
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_wrapped_flask_image_serves_predictions(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need("buildah", "podman")
    out = tmp_path / "wrapped"
    image = f"{registry}/wrap/model:1"
    assert main(["wrap", "flask", str(EXAMPLE_REPO), "-e", "model:Classifier", "-o", str(out),
                 "--from", base_image, "--to", image, "--name", "model"]) == 0
    monkeypatch.chdir(out)
    assert main(["apply", "-f", str(out / "service.yaml"), "--no-push"]) == 0, \
        capsys.readouterr().err
    _serve_and_check(image, ["--entrypoint", "python3", "-e", "VEIL_ENTRYPOINT=model:Classifier",
                             "-w", "/app"], ["-m", "veil_runner", "flask"])


def test_wrapped_context_with_wheels_builds_with_plain_buildah(
    registry: str, base_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`veil wrap --wheels`: its Containerfile alone builds offline; the image's CMD serves."""
    need("buildah", "podman")
    out = tmp_path / "wrapped"
    assert main(["wrap", "flask", str(EXAMPLE_REPO), "-e", "model:Classifier", "-o", str(out),
                 "--from", base_image, "--wheels"]) == 0, capsys.readouterr().err
    image = f"localhost/veil-test/wrapped-plain:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        ["buildah", "build", "--isolation", "chroot", "--layers", "--tls-verify=false",
         "-f", "Containerfile", "-t", image, "."],
        cwd=out, env=container_env(), capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        _serve_and_check(image, [], [])
    finally:
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)


def _serve_and_check(image: str, run_args: list[str], command: list[str]) -> None:
    port = free_port()
    name = f"veil-wrap-test-{port}"
    proc = subprocess.run(
        ["podman", "run", "-d", "--rm", "--init", "--name", name, "--network", "host",
         "-e", f"HTTP_PORT={port}", "-e", "HTTP_HOST=127.0.0.1", *run_args, image, *command],
        capture_output=True, text=True, check=False, env=container_env(),
    )
    assert proc.returncode == 0, proc.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/ready", name)
        r = httpx.post(url + "/predict", json={"x": 42})
        assert (r.status_code, r.json()) == (200, {"label": "large", "x": 42.0})
        assert "veil_predict_duration_seconds_count" in httpx.get(url + "/metrics").text
    finally:
        subprocess.run(["podman", "stop", "-t", "5", name], capture_output=True, check=False)
