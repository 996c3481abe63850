"""Real builds through `veil platform serve`: git daemon → buildah → two registries."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.platform.conftest import ROLE, GitServer, PlatformServer, request
from veil.image.reference import parse_reference
from veil.image.registry import Registry
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "s3cr3t-Value-7f1c9e"
GREETING = 'hello "$HOME" \\ ${X:-y} \'q\''  # quotes, variables, a backslash: labelled as is
# A step unique to this run: buildah's layer cache outlives a run (same base image id), and a
# cached RUN prints nothing
RUN_ID = uuid.uuid4().hex
DOCKERFILE = f"""\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN echo "run {RUN_ID}"
ARG GREETING
RUN echo "building with $GREETING"
RUN --mount=type=secret,id=TOKEN sha256sum /run/secrets/TOKEN | cut -c1-64 > /token.sha \\
    && echo "the token is $(cat /run/secrets/TOKEN)"
COPY app.txt /app.txt
"""


def test_build_pushes_every_tag_to_every_registry(
    platform: PlatformServer, git_server: GitServer, registry: str, registry2: str,
    base_image: str,
) -> None:
    first = git_server.repo("app", {"Dockerfile": DOCKERFILE, "app.txt": "one\n"})
    git_server.repo("app", {"app.txt": "two\n"})
    git_server.repo("app", {"app.txt": "three\n"})  # the asked commit is 2 behind the tip
    body = request(git_server.url("app"), first, [registry, registry2],
                   build_args={"BASE_IMAGE": base_image, "GREETING": GREETING,
                               "secret:TOKEN": SECRET})
    build_id = platform.submit(body)
    b = platform.wait(build_id)
    logs = platform.logs(build_id)
    assert b["status"] == "succeeded", logs[-3000:]
    assert "further back than 1 commits" in logs  # deepened
    assert "building with hello" in logs
    assert SECRET not in logs and "the token is [secret TOKEN]" in logs

    assert set(b["digests"]) == {registry, registry2}
    for reg in (registry, registry2):
        for tag in ("1.0", "latest"):
            ref = parse_reference(f"{reg}/team-a/app:{tag}")
            with Registry(ref) as r:
                digest, _ = r.manifest()
                _, config = r.config()
            assert digest == b["digests"][reg]
    labels = config["config"]["Labels"]
    assert labels["io.veil.platform.aws-role-arn"] == ROLE
    assert labels["io.veil.platform.aws-account-alias"] == "team-a-dev"
    assert labels["io.veil.platform.build-arg.GREETING"] == GREETING
    assert labels["org.opencontainers.image.revision"] == first
    assert not any("TOKEN" in k for k in labels)
    assert SECRET not in json.dumps(config)  # not in labels, env or history

    # the secret did reach the build step that mounted it
    ref = f"{registry}/team-a/app@{b['digests'][registry]}"
    out = subprocess.run(["podman", "run", "--rm", "--tls-verify=false", ref, "cat", "/token.sha"],
                         env=container_env(), capture_output=True, text=True, check=False)
    assert out.stdout.strip() == hashlib.sha256(SECRET.encode()).hexdigest(), out.stderr

    # the work folder is kept (retention), without the secret
    assert (Path(platform.state_dir) / "work" / build_id / "checkout" / "Dockerfile").is_file()
    # nor is it in the job store or the work folder
    assert SECRET not in json.dumps(b)
    for path in Path(platform.state_dir).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50 << 20:
            assert SECRET.encode() not in path.read_bytes(), path


def test_containerbuild_answers_at_once_and_lists_by_namespace(
    platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
) -> None:
    commit = git_server.repo("small", {"Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"})
    body = request(git_server.url("small"), commit, [registry], namespace="team-b",
                   image_name="team-b/small", build_args={"BASE_IMAGE": base_image})
    r = platform.client.post("/containerbuild", json=body)
    assert r.status_code == 202
    assert r.headers["Location"] == f"/builds/{r.json()['id']}"
    b = platform.wait(r.json()["id"])
    assert b["status"] == "succeeded", platform.logs(b["id"])
    listed = platform.client.get("/builds", params={"namespace": "team-b"}).json()
    assert [x["id"] for x in listed] == [b["id"]]
    assert all(x["namespace"] == "team-a"
               for x in platform.client.get("/builds", params={"namespace": "team-a"}).json())


