"""Real parts for image tests: a docker-registry on loopback and the Python base image.

Shared by tests/image and tests/e2e (their conftest files import these fixtures). One registry
per test process, stopped by PID when the last user is done; `VEIL_TEST_REGISTRY=HOST:PORT` uses
one that is already running. The base image is made by the same code as `veil base create
python`, with its root filesystem cached under `$VEIL_TEST_CACHE` (default
/var/tmp/veil-test-cache), so only the first run on a machine bootstraps Debian.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "scripts" / "containers"
_registry: dict[str, object] = {}


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (install with scripts/setup.sh)")


def use_project_containers_conf() -> None:
    """buildah/podman in tests use Veil's settings (overlay, runc, host network)."""
    if os.environ.get("CONTAINERS_CONF"):
        return
    from veil.image.tools import write_container_confs

    conf_dir = Path(tempfile.gettempdir()) / f"veil-test-containers-{os.getpid()}"
    os.environ.update(write_container_confs(conf_dir))


def _start_registry() -> tuple[str, subprocess.Popen[bytes], Path]:
    need("docker-registry")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="veil-test-registry-"))
    conf = (CONTAINERS / "registry-config.yml.in").read_text()
    conf = conf.replace("@ADDR@", f"127.0.0.1:{port}").replace("@ROOT@", str(work / "data"))
    (work / "config.yml").write_text(conf)
    log = (work / "log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    addr = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"http://{addr}/v2/", timeout=1).status_code == 200:
                return addr, proc, work
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"docker-registry did not start: {(work / 'log').read_text()[-500:]}")


def _remove_local_images(addr: str) -> None:
    """Untag what this session built or pulled (names carry its random port), so local storage
    does not grow with every run; shared layers stay cached."""
    if not have("buildah"):
        return
    out = subprocess.run(["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"],
                         capture_output=True, text=True, check=False).stdout
    names = sorted({n for n in out.split() if n.startswith(addr + "/")})
    if names:
        subprocess.run(["buildah", "rmi", *names], capture_output=True, check=False)


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """HOST:PORT of a running registry."""
    use_project_containers_conf()
    given = os.environ.get("VEIL_TEST_REGISTRY")
    if given:
        yield given
        return
    if "addr" not in _registry:
        addr, proc, work = _start_registry()
        _registry.update(addr=addr, proc=proc, work=work, users=0)
    _registry["users"] = int(_registry["users"]) + 1  # type: ignore[call-overload]
    try:
        yield str(_registry["addr"])
    finally:
        _registry["users"] = int(_registry["users"]) - 1  # type: ignore[call-overload]
        if _registry["users"] == 0:
            proc = _registry.pop("proc")
            assert isinstance(proc, subprocess.Popen)
            os.kill(proc.pid, 15)
            proc.wait(timeout=10)
            _remove_local_images(str(_registry["addr"]))
            shutil.rmtree(str(_registry.pop("work")), ignore_errors=True)
            _registry.clear()


@pytest.fixture(scope="session")
def base_image(registry: str) -> str:
    """A Python base image in the test registry, made by `veil base create python`'s code."""
    need("buildah", "debootstrap")
    from veil.image.base import create_python_base

    ref = f"{registry}/veil/python:bookworm"
    cache = Path(os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache"))
    create_python_base(ref, cache=cache)
    return ref


def hello_service(dir: Path, registry: str, base: str, *, name: str = "hello",
                  extra: str = "", program: str | None = None) -> Path:
    """The seeds' hello-user service in `dir`; returns the manifest path."""
    dir.mkdir(parents=True, exist_ok=True)
    src = (ROOT / "examples" / "hello-user" / "print_env.py").read_text()
    (dir / "print_env.py").write_text(program if program is not None else src)
    (dir / "service.yaml").write_text(f"""\
apiVersion: scone/5.8
kind: genservice
environment:
  local:
    - name: SCONE_LOG
      value: error
    - name: API_PASSWORD
      value: "$$SCONE::password$$"
  global:
    - name: API_USER
secrets:
  global:
  - name: password
    kind: ascii
    size: 10
build:
  name: {name}
  kind: python
  to: {registry}/test/{name}:1
  from: {base}
  pwd: /python
  command: python3 print_env.py
  copy:
    - print_env.py
{extra}""")
    return dir / "service.yaml"


def wait_ready(url: str, container: str, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; on timeout fail with the container's logs."""
    from veil.image.tools import container_env

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True,
                                  env=container_env(), check=False)
            pytest.fail(f"{url} not ready after {timeout:.0f} s:\n"
                        f"{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        time.sleep(0.2)
