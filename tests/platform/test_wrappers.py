"""The seed's flow end to end: a containerbuild of the platform's own wrapper repository
(`flask/Dockerfile`, `kafka/Dockerfile`) with a customer repository and commit as build args
yields an image that, run with podman, answers /predict (or consumes and produces on Tansu)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.image.support import need, wait_ready
from tests.platform.conftest import GitServer, PlatformServer, request
from tests.wrap.conftest import EXAMPLE_REPO, kafka_bootstrap, topics
from tests.wrap.kafka_helpers import Reader, good, produce
from veil.image.tools import container_env

__all__ = ["kafka_bootstrap", "topics"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=container_env(), capture_output=True,
                          text=True, check=False)


def customer_commit(git_server: GitServer) -> str:
    files = {p.name: p.read_text() for p in Path(EXAMPLE_REPO).iterdir() if p.is_file()}
    return git_server.repo("customer", files)


def wrapper_build(platform: PlatformServer, git_server: GitServer, registry: str,
                  base_image: str, kind: str, entrypoint: str) -> dict[str, object]:
    wrappers = platform.client.get("/wrappers").json()
    assert f"{kind}/Dockerfile" in wrappers["dockerfiles"]
    body = request(
        wrappers["repository"], wrappers["git_commit_sha"], [registry],
        git_branch=wrappers["git_branch"], dockerfile_path=f"{kind}/Dockerfile",
        docker_context=".", image_name=f"team-a/model-{kind}", image_tags=["v1"],
        build_args={"CUSTOMER_REPOSITORY": git_server.url("customer"),
                    "CUSTOMER_COMMIT_SHA": customer_commit(git_server),
                    "ENTRYPOINT": entrypoint, "BASE_IMAGE": base_image})
    b = platform.wait(platform.submit(body), timeout=400)
    assert b["status"] == "succeeded", platform.logs(str(b["id"]))[-4000:]
    return b


def test_flask_wrapper_image_of_a_customer_repo_answers_predict(
    platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
) -> None:
    need("buildah", "podman", "git")
    b = wrapper_build(platform, git_server, registry, base_image, "flask", "model:predict")
    ref = f"{registry}/team-a/model-flask@{b['digests'][registry]}"  # type: ignore[index]
    port = free_port()
    name = f"veil-platform-flask-{port}"
    run = podman("run", "-d", "--rm", "--init", "--tls-verify=false", "--name", name,
                 "--network", "host", "-e", f"HTTP_PORT={port}", "-e", "HTTP_HOST=127.0.0.1", ref)
    assert run.returncode == 0, run.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/ready", name)
        r = httpx.post(url + "/predict", json={"values": [1, 2, 3]})
        assert (r.status_code, r.json()) == (200, {"sum": 6.0, "mean": 2.0})
    finally:
        podman("stop", "-t", "5", name)
        podman("rmi", "-f", ref)


def test_kafka_wrapper_image_consumes_and_produces_on_the_broker(
    platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
    kafka_bootstrap: str, topics: dict[str, str],
) -> None:
    need("buildah", "podman", "git")
    b = wrapper_build(platform, git_server, registry, base_image, "kafka", "model:Classifier")
    ref = f"{registry}/team-a/model-kafka@{b['digests'][registry]}"  # type: ignore[index]
    produce(kafka_bootstrap, topics["in"], [good(i) for i in range(5, 15)])
    reader = Reader(kafka_bootstrap, topics["out"], topics["dlq"])
    name = f"veil-platform-kafka-{uuid.uuid4().hex[:8]}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_INPUT_TOPIC": topics["in"],
           "KAFKA_OUTPUT_TOPIC": topics["out"], "KAFKA_DLQ_TOPIC": topics["dlq"],
           "KAFKA_GROUP_ID": topics["group"], "KAFKA_SESSION_TIMEOUT_MS": "6000",
           "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "HEALTH_PORT": str(free_port())}
    args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    run = podman("run", "-d", "--rm", "--init", "--tls-verify=false", "--name", name,
                 "--network", "host", *args, ref)
    assert run.returncode == 0, run.stderr
    try:
        assert reader.wait_for(10, 60) == 10, podman("logs", name).stderr[-3000:]
        labels = {int(r["key"]): json.loads(r["value"])["label"] for r in reader.records}
        assert labels == {i: "large" if i > 10 else "small" for i in range(5, 15)}
    finally:
        podman("stop", "-t", "10", name)
        podman("rmi", "-f", ref)
        reader.close()
