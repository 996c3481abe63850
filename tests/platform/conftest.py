"""Platform test fixtures: real git servers (`git daemon`), real registries, real
`veil platform serve` processes, each stopped by its PID.

Repositories are made by `GitServer.repo(name, {path: content})`; a content of `Link(target)`
is a symbolic link. Each commit's id is returned, so tests ask for builds like a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.image.support import _start_registry, base_image, need, registry
from tests.postgres import postgres

# The base of the test Dockerfiles, with a step unique to this run: buildah's layer cache
# outlives a run (the cached base image has the same id every time), and a cached step neither
# prints nor sleeps, so a test that counts on a RUN really running would pass or fail by history.
RUN_ID = uuid.uuid4().hex
BASE = f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nLABEL io.veil.test.run={RUN_ID}\n"

__all__ = ["base_image", "registry"]

REPO = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::123456789012:role/team-a-builder"


@dataclass(frozen=True)
class Link:
    target: str


class GitServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def repo(self, name: str, files: dict[str, str | bytes | Link], *, branch: str = "main",
             message: str = "commit") -> str:
        """Commit `files` (added to what is there) on `branch` of repository `name`."""
        path = self.root / name
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=path, env=env, check=True,
                                  capture_output=True, text=True).stdout.strip()

        if not path.exists():
            path.mkdir(parents=True)
            git("init", "-q", "-b", branch)
        elif git("branch", "--list", branch):
            git("checkout", "-q", branch)
        else:
            git("checkout", "-q", "-b", branch)
        for rel, content in files.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if isinstance(content, Link):
                target.symlink_to(content.target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git("add", "-A")
        git("commit", "-q", "--allow-empty", "-m", message)
        return git("rev-parse", "HEAD")


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    need("git")
    root = tmp_path_factory.mktemp("git")
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
         "--listen=127.0.0.1", f"--port={port}", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield GitServer(root, port)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture(scope="session")
def registry2() -> Iterator[str]:
    """A second registry, for pushes to every registry of a build."""
    addr, proc, _work = _start_registry()
    yield addr
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)


@pytest.fixture(scope="session")
def readonly_registry() -> Iterator[str]:
    """A registry that answers but refuses every push (read-only mode)."""
    need("docker-registry")
    work = Path(tempfile.mkdtemp(prefix="veil-test-ro-registry-"))
    port = free_port()
    conf = (REPO / "scripts" / "containers" / "registry-config.yml.in").read_text()
    conf = conf.replace("@ADDR@", f"127.0.0.1:{port}").replace("@ROOT@", str(work / "data"))
    conf = conf.replace("  delete:\n    enabled: true\n",
                        "  delete:\n    enabled: true\n  maintenance:\n    readonly:\n"
                        "      enabled: true\n")
    (work / "config.yml").write_text(conf)
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    addr = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"http://{addr}/v2/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield addr
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)


@dataclass
class PlatformServer:
    url: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def submit(self, body: dict[str, Any]) -> str:
        r = self.client.post("/containerbuild", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def build(self, build_id: str) -> dict[str, Any]:
        r = self.client.get(f"/builds/{build_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, build_id: str, timeout: float = 240,
             until: tuple[str, ...] = ("succeeded", "failed", "cancelled")) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            b = self.build(build_id)
            if b["status"] in until:
                return b
            if time.monotonic() > deadline:
                pytest.fail(f"build {build_id} still {b['status']} after {timeout} s:\n"
                            + self.client.get(f"/builds/{build_id}/logs",
                                              params={"follow": "false"}).text[-3000:])
            time.sleep(0.2)

    def logs(self, build_id: str) -> str:
        return self.client.get(f"/builds/{build_id}/logs", params={"follow": "false"}).text

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)
        self.client.close()


def start_platform(state_dir: Path, *, db: str | None = None, workers: int = 2,
                   extra: tuple[str, ...] = ()) -> PlatformServer:
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "veil", "platform", "serve", "--state-dir", str(state_dir),
           "--listen", f"127.0.0.1:{port}", "--workers", str(workers), *extra]
    if db:
        cmd += ["--db", db]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"platform did not start: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    return PlatformServer(url, state_dir, log, proc)


@pytest.fixture(scope="session")
def platform_factory(
    tmp_path_factory: pytest.TempPathFactory, registry: str,
) -> Iterator[Callable[..., PlatformServer]]:
    started: list[PlatformServer] = []

    def make(state_dir: Path | None = None, **kw: Any) -> PlatformServer:
        server = start_platform(state_dir or tmp_path_factory.mktemp("platform"), **kw)
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def platform(platform_factory: Callable[..., PlatformServer]) -> PlatformServer:
    return platform_factory(extra=("--build-timeout", "120"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    yield from postgres("veil_platform")


def request(repo: str, commit: str, registries: list[str] | None = None,
            **over: Any) -> dict[str, Any]:
    """A containerbuild body with the seed's thirteen fields."""
    body: dict[str, Any] = {
        "repository": repo, "git_branch": "main", "git_commit_sha": commit,
        "image_name": "team-a/app", "dockerfile_path": "Dockerfile", "docker_context": ".",
        "namespace": "team-a", "image_tags": ["1.0", "latest"],
        "injected_aws_role_arn": ROLE, "injected_aws_account_short_alias": "team-a-dev",
        "registries": registries or [], "build_args": {}, "git_fetch_depth": 1,
    }
    body.update(over)
    return body
