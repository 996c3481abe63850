"""The platform's own wrapper repository (the role of `blacklodge_containers`), served over git.

At start the platform commits the wrapper build contexts it ships into a bare repository:

    flask/Dockerfile   kafka/Dockerfile   runner/ (the wrapper runtime)   .dockerignore

with a fixed author and date, so the same Veil gives the same commit id everywhere. The
repository is served read-only over git's smart HTTP protocol (`git http-backend`) at
`/git/wrappers.git`, so a `containerbuild` names it like any other repository:
`repository: http://PLATFORM/git/wrappers.git`, `dockerfile_path: flask/Dockerfile`,
`docker_context: .`, and the customer repository as build args.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from veil.errors import OperationalError
from veil.fsutil import replace_dir
from veil.platform.git import git_env

__all__ = ["REPO_NAME", "WrapperRepo", "http_backend", "publish_wrappers"]

REPO_NAME = "wrappers.git"
BRANCH = "main"
_WRAP = Path(__file__).resolve().parents[1] / "wrap"
_README = """\
# Veil's wrapper build contexts

Build `flask/Dockerfile` or `kafka/Dockerfile` with docker context `.` and the build args
`CUSTOMER_REPOSITORY` (a git URL), `CUSTOMER_COMMIT_SHA`, optional `CUSTOMER_GIT_BRANCH`
(default main), `ENTRYPOINT` (module:callable) and `BASE_IMAGE`.
"""


@dataclass(frozen=True)
class WrapperRepo:
    root: Path  # the folder holding wrappers.git
    commit: str
    branch: str = BRANCH
    dockerfiles: tuple[str, ...] = ("flask/Dockerfile", "kafka/Dockerfile")


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}


def _git(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise OperationalError(f"git {args[0]} for the wrapper repository failed: "
                               f"{proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def publish_wrappers(state_dir: Path) -> WrapperRepo:
    """(Re)write `state_dir/git/wrappers.git` from the shipped contexts; its commit id."""
    env = git_env() | {"GIT_ALLOW_PROTOCOL": "file",
        "GIT_AUTHOR_NAME": "Veil", "GIT_AUTHOR_EMAIL": "veil@localhost",
        "GIT_COMMITTER_NAME": "Veil", "GIT_COMMITTER_EMAIL": "veil@localhost",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
    }
    root = state_dir / "git"
    with tempfile.TemporaryDirectory(prefix="veil-wrappers-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        for kind in ("flask", "kafka"):
            (tree / kind).mkdir()
            shutil.copy(_WRAP / "contexts" / kind / "Dockerfile", tree / kind / "Dockerfile")
        shutil.copytree(_WRAP / "runner", tree / "runner", ignore=_ignore)
        shutil.copy(_WRAP / ".dockerignore", tree / ".dockerignore")
        (tree / "README.md").write_text(_README)
        for path in tree.rglob("*"):  # modes as git records them, whatever the install did
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        _git(["init", "-q", "-b", BRANCH], tree, env)
        _git(["add", "-A"], tree, env)
        _git(["commit", "-q", "-m", "Veil's wrapper build contexts"], tree, env)
        commit = _git(["rev-parse", "HEAD"], tree, env)
        bare = root / REPO_NAME
        if bare.is_dir() and _git(["rev-parse", BRANCH], bare, env) == commit:
            return WrapperRepo(root, commit)
        with replace_dir(bare) as new:
            _git(["clone", "-q", "--bare", str(tree), str(new)], Path(tmp), env)
            _git(["config", "http.uploadpack", "true"], new, env)
            _git(["config", "http.receivepack", "false"], new, env)
    return WrapperRepo(root, commit)


def http_backend(root: Path, path: str, method: str, query: str, content_type: str,
                 encoding: str, protocol: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Answer one request of git's smart HTTP protocol (fetch only) with `git http-backend`."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "PATH_INFO": "/" + path,
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
    }
    if encoding:
        env["HTTP_CONTENT_ENCODING"] = encoding
    if protocol:
        env["GIT_PROTOCOL"] = protocol
    proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                          check=False, timeout=300)
    head, _, payload = proc.stdout.partition(b"\r\n\r\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    if not head:
        return 500, {"Content-Type": "text/plain"}, b"git http-backend failed\n"
    return status, headers, payload
