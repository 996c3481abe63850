"""The platform's wrapper build contexts (contexts/flask|kafka/Dockerfile) built for real with
buildah from a customer repository given by build args, then run with podman: the Flask image
answers over HTTP, the Kafka image consumes from Tansu. Wheels come from a folder in the docker
context (PIP_FIND_LINKS), since a build step here cannot reach a package index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.image.support import need, wait_ready
from tests.wrap.conftest import EXAMPLE_REPO
from tests.wrap.kafka_helpers import Reader, good, produce
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRAP_DIR = Path(__file__).resolve().parents[2] / "src" / "veil" / "wrap"
CACHE = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def wheels_for(kind: str) -> Path:
    """Wheels of the runner's requirements for the base image's Python (3.11), cached."""
    dest = CACHE / f"wrap-wheels-{kind}"
    if not (dest / ".complete").exists():
        plat = [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *plat,
             "-r", str(WRAP_DIR / "runner" / f"requirements-{kind}.txt"), "-d", str(dest)],
            check=True,
        )
        (dest / ".complete").write_text("")
    return dest


def docker_context(tmp: Path, kind: str) -> Path:
    """What the platform's build sees: the wrapper folder with the customer checkout inside."""
    ctx = tmp / "ctx"
    shutil.copytree(WRAP_DIR / "runner", ctx / "runner",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(WRAP_DIR / "contexts", ctx / "contexts")
    shutil.copy(WRAP_DIR / ".dockerignore", ctx / ".dockerignore")
    shutil.copytree(EXAMPLE_REPO, ctx / "customer")
    shutil.copytree(wheels_for(kind), ctx / "wheels")
    return ctx


def buildah_build(ctx: Path, kind: str, base: str, entrypoint: str, tag: str
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", "build", "--isolation", "chroot", "--layers", "--tls-verify=false",
         "-f", f"contexts/{kind}/Dockerfile", "--build-arg", f"BASE_IMAGE={base}",
         "--build-arg", "CUSTOMER_REPO_DIR=customer", "--build-arg", f"ENTRYPOINT={entrypoint}",
         "--build-arg", "PIP_FIND_LINKS=wheels", "-t", tag, "."],
        cwd=ctx, env=container_env(), capture_output=True, text=True, check=False,
    )


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=container_env(), capture_output=True,
                          text=True, check=False)


def test_flask_context_embeds_the_customer_repo_and_serves_it(
    registry: str, base_image: str, tmp_path: Path
) -> None:
    need("buildah", "podman")
    ctx = docker_context(tmp_path, "flask")
    tag = f"localhost/veil-test/wrapped-flask:{uuid.uuid4().hex[:8]}"
    build = buildah_build(ctx, "flask", base_image, "model:predict", tag)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    port = free_port()
    name = f"veil-wrap-flask-{port}"
    run = podman("run", "-d", "--rm", "--init", "--name", name, "--network", "host",
                 "-e", f"HTTP_PORT={port}", "-e", "HTTP_HOST=127.0.0.1", tag)
    assert run.returncode == 0, run.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/ready", name)
        r = httpx.post(url + "/predict", json={"values": [1, 2, 3]})
        assert (r.status_code, r.json()) == (200, {"sum": 6.0, "mean": 2.0})
    finally:
        podman("stop", "-t", "5", name)
        podman("rmi", "-f", tag)

    # A wrong entrypoint fails the build, with the reason, instead of the first request.
    bad = buildah_build(ctx, "flask", base_image, "model:nothing", tag + "-bad")
    assert bad.returncode != 0
    assert "has no attribute 'nothing'" in bad.stdout + bad.stderr


def test_kafka_context_consumes_from_a_real_broker(
    registry: str, base_image: str, kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    need("buildah", "podman")
    ctx = docker_context(tmp_path, "kafka")
    tag = f"localhost/veil-test/wrapped-kafka:{uuid.uuid4().hex[:8]}"
    build = buildah_build(ctx, "kafka", base_image, "model:Classifier", tag)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    produce(kafka_bootstrap, topics["in"], [good(i) for i in range(5, 15)])
    reader = Reader(kafka_bootstrap, topics["out"], topics["dlq"])
    name = f"veil-wrap-kafka-{uuid.uuid4().hex[:8]}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_INPUT_TOPIC": topics["in"],
           "KAFKA_OUTPUT_TOPIC": topics["out"], "KAFKA_DLQ_TOPIC": topics["dlq"],
           "KAFKA_GROUP_ID": topics["group"], "KAFKA_SESSION_TIMEOUT_MS": "6000",
           "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "HEALTH_PORT": str(free_port())}
    args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    run = podman("run", "-d", "--rm", "--init", "--name", name, "--network", "host", *args, tag)
    assert run.returncode == 0, run.stderr
    try:
        assert reader.wait_for(10, 60) == 10, podman("logs", name).stderr[-3000:]
        labels = {int(r["key"]): json.loads(r["value"])["label"] for r in reader.records}
        assert labels == {i: "large" if i > 10 else "small" for i in range(5, 15)}
    finally:
        podman("stop", "-t", "10", name)
        podman("rmi", "-f", tag)
        reader.close()
