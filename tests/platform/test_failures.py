"""Bad input as an attacker would send it: each a failed build with the reason (or a 4xx),
nothing read from outside the work folder, the service still up and other builds unaffected."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.platform.conftest import BASE, GitServer, Link, PlatformServer, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def _build(platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
           name: str, files: dict[str, str | bytes | Link], **over: object) -> dict[str, object]:
    commit = git_server.repo(name, files)
    over.setdefault("build_args", {"BASE_IMAGE": base_image})
    over.setdefault("image_name", f"team-a/{name}")
    body = request(git_server.url(name), str(over.pop("commit", commit)), [registry], **over)
    return platform.wait(platform.submit(body))


CASES: list[tuple[str, dict[str, str | bytes | Link], dict[str, object], str]] = [
    ("dockerfile-link", {"Dockerfile": Link("/etc/hostname")}, {},
     "dockerfile_path 'Dockerfile' leads outside the checkout"),
    ("context-link", {"Dockerfile": BASE, "ctx": Link("/etc")}, {"docker_context": "ctx"},
     "docker_context 'ctx' leads outside the checkout"),
    ("link-inside", {"Dockerfile": BASE + "COPY . /x\n", "passwd": Link("/etc/passwd")}, {},
     "symbolic links lead outside the checkout: passwd"),
    ("link-up", {"Dockerfile": BASE, "sub/up": Link("../../..")}, {},
     "symbolic links lead outside the checkout: sub/up"),
    ("no-dockerfile", {"README": "x"}, {}, "dockerfile_path 'Dockerfile': no such file"),
    ("unknown-commit", {"Dockerfile": BASE}, {"commit": "f" * 40},
     f"the commit {'f' * 40} is not on branch main"),
    ("no-branch", {"Dockerfile": BASE}, {"git_branch": "release"},
     "fetching branch release of the repository"),
    ("failing-run", {"Dockerfile": BASE + "RUN echo about to fail && exit 3\n"}, {},
     "building Dockerfile failed"),
    ("escape-copy", {"Dockerfile": BASE + "COPY ../../../../../etc/hostname /h\n"}, {},
     "building Dockerfile failed"),
    ("bad-requirements", {"Dockerfile": BASE + "ARG PIP_FIND_LINKS\n",
                          "requirements.txt": "-r /etc/shadow\n"}, {},
     "requirements.txt:1: only requirement specifiers"),
]


@pytest.mark.parametrize(("name", "files", "over", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_the_build_with_the_reason(
    platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
    name: str, files: dict[str, str | bytes | Link], over: dict[str, object], reason: str,
) -> None:
    b = _build(platform, git_server, registry, base_image, f"{name}-{uuid.uuid4().hex[:6]}",
               files, **over)
    assert b["status"] == "failed"
    assert reason in str(b["error"]), b["error"]
    assert platform.client.get("/healthz").status_code == 200


def test_a_branch_that_does_not_hold_the_commit(
    platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
) -> None:
    git_server.repo("branches", {"Dockerfile": BASE})
    feature = git_server.repo("branches", {"f.txt": "x"}, branch="feature")
    body = request(git_server.url("branches"), feature, [registry], git_fetch_depth=3,
                   build_args={"BASE_IMAGE": base_image}, image_name="team-a/branches")
    b = platform.wait(platform.submit(body))
    assert b["status"] == "failed"
    assert f"the commit {feature} is not on branch main" in str(b["error"])
    assert "whole history" in str(b["error"])


def test_an_unreachable_repository(platform: PlatformServer, registry: str) -> None:
    body = request(f"git://127.0.0.1:{free_port()}/nothing", "a" * 40, [registry])
    b = platform.wait(platform.submit(body))
    assert b["status"] == "failed"
    assert "fetching branch main of the repository" in str(b["error"])
    assert "reachable" in str(b["error"])


def test_a_bind_mount_cannot_read_outside_the_context(
    platform: PlatformServer, git_server: GitServer, registry: str, base_image: str,
) -> None:
    marker = uuid.uuid4().hex
    (Path(platform.state_dir) / "outside.txt").write_text(marker)
    dockerfile = BASE + (
        "RUN --mount=type=bind,source=/,target=/h cat /h/../../../outside.txt /h/outside.txt "
        "/h/../../outside.txt; true\n"
        "RUN --mount=type=bind,source=../../..,target=/u cat /u/outside.txt; true\n")
    b = _build(platform, git_server, registry, base_image, f"mount-{marker[:6]}",
               {"Dockerfile": dockerfile})
    assert marker not in platform.logs(str(b["id"]))


def test_a_registry_that_refuses_the_push_is_named(
    platform: PlatformServer, git_server: GitServer, registry: str, readonly_registry: str,
    base_image: str,
) -> None:
    commit = git_server.repo("refused", {"Dockerfile": BASE + "RUN echo refused > /r\n"})
    body = request(git_server.url("refused"), commit, [registry, readonly_registry],
                   build_args={"BASE_IMAGE": base_image}, image_name="team-a/refused")
    b = platform.wait(platform.submit(body))
    assert b["status"] == "failed"
    assert f"pushing to the registry {readonly_registry} failed" in str(b["error"])
    assert registry not in str(b["error"]).split("failed")[0]
    assert list(b["digests"]) == [registry]  # the one that took it keeps its digest


def test_cancel_and_timeout_stop_a_running_build_others_unaffected(
    platform_factory: Callable[..., PlatformServer], git_server: GitServer, registry: str,
    base_image: str, tmp_path: Path,
) -> None:
    server = platform_factory(tmp_path / "p", workers=3,
                              extra=("--build-timeout", "8", "--retain-work-dirs", "2"))
    sleepy = git_server.repo("sleepy", {"Dockerfile": BASE + "RUN echo sleeping && sleep 300\n"})
    good = git_server.repo("good", {"Dockerfile": BASE + "RUN echo fine > /fine\n"})
    args = {"BASE_IMAGE": base_image}
    cancel_id = server.submit(request(git_server.url("sleepy"), sleepy, [registry],
                                      build_args=args, image_name="team-a/sleepy"))
    timeout_id = server.submit(request(git_server.url("sleepy"), sleepy, [registry],
                                       build_args=args, image_name="team-a/sleepy2"))
    good_id = server.submit(request(git_server.url("good"), good, [registry],
                                    build_args=args, image_name="team-a/good"))
    seen = ""  # the log streams (chunked) while the build runs
    with server.client.stream("GET", f"/builds/{cancel_id}/logs", timeout=60) as stream:
        for chunk in stream.iter_text():
            seen += chunk
            if "sleeping" in seen:
                break
    assert "sleeping" in seen and server.build(cancel_id)["status"] == "running"
    started = time.monotonic()
    r = server.client.post(f"/builds/{cancel_id}/cancel")
    assert r.status_code == 202
    b = server.wait(cancel_id, timeout=30)
    assert b["status"] == "cancelled" and time.monotonic() - started < 10
    assert b["error"] == "cancelled on request"
    t = server.wait(timeout_id, timeout=60)
    assert t["status"] == "failed" and "timed out after 8 s" in str(t["error"])
    g = server.wait(good_id)
    assert g["status"] == "succeeded", server.logs(good_id)
    work = tmp_path / "p" / "work" / good_id  # retention: removed 2 s after the build ended
    deadline = time.monotonic() + 20
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not work.exists()
