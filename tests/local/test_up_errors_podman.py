"""`veil up`'s error paths and its Ctrl-C with real podman, and `build.host_paths` mounted.

One image serves every case: what its program does is chosen by the mesh's value of API_USER
(a global variable CAS hands over only after attestation). Each case: `veil up` exits non-zero
with a line naming the service and what to do, and `veil ps` shows the state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.image.support import hello_service, need
from veil.cli import main
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN = uuid.uuid4().hex[:8]

PROGRAM = """\
import os, socket, sys, time
mode = os.environ.get("API_USER", "")
port = int(os.environ.get("APP_SERVICE_PORT") or 0)
if mode == "exit":
    print("no configuration for this mode", flush=True)
    sys.exit(3)
if mode == "silent":  # runs, never answers on its port
    time.sleep(3600)
if mode == "read":
    folder = os.environ["HOST_DIR"]
    print("host says:", open(os.path.join(folder, "greeting.txt")).read().strip(), flush=True)
    try:
        open(os.path.join(folder, "written-by-the-container"), "w").close()
        print("host folder writable", flush=True)
    except OSError as err:
        print("host folder read-only:", err.strerror, flush=True)
    sys.exit(0)
print("Hello", mode, flush=True)
"""

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: 127.0.0.1:9
    tolerance: "--only_for_testing-debug"
policy:
  namespace: {namespace}
services:
  - name: {service}
    image: {image}
    env:
      - name: API_USER
        value: {mode}
      - name: APP_SERVICE_PORT
        value: "{port}"
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("up-errors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(home / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(home / "config"))
        yield home
        for mesh in home.glob("*.yaml"):
            main(["down", "-f", str(mesh)])
        main(["down", "--all", "--volumes"])


@pytest.fixture(autouse=True)
def _same_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_HOME", str(home / "home"))
    monkeypatch.setenv("VEIL_CONFIG_DIR", str(home / "config"))


@pytest.fixture(scope="module")
def host_dir(home: Path) -> Path:
    folder = home / "host-folder"
    folder.mkdir()
    (folder / "greeting.txt").write_text("from the host\n")
    return folder


@pytest.fixture(scope="module")
def image(registry: str, base_image: str, home: Path, host_dir: Path) -> str:
    need("buildah", "podman")
    manifest = hello_service(home / "svc", registry, base_image, name="up-errors",
                             program=PROGRAM, extra=f"  host_paths:\n    - {host_dir}\n")
    text = manifest.read_text().replace(
        "  global:\n", "  global:\n    - name: APP_SERVICE_PORT\n      value: \"0\"\n"
        f"    - name: HOST_DIR\n      value: {host_dir}\n", 1)
    manifest.write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(manifest.parent)
        code = main(["apply", "-f", str(manifest), "-t", str(home / "svc" / "target")])
    assert code == 0
    return f"{registry}/test/up-errors:1"


def veil(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def mesh_file(home: Path, case: str, image: str, mode: str, port: int = 0,
              service: str = "app") -> Path:
    path = home / f"{case}.yaml"
    path.write_text(MESH.format(namespace=f"up-{case}-{RUN}", image=image, mode=mode,
                                port=port, service=service))
    return path


def up(capsys: pytest.CaptureFixture[str], home: Path, mesh: Path,
       *extra: str) -> tuple[int, str]:
    return veil(capsys, "up", "-f", str(mesh), "--mode", "debug", "-t", str(home / "target"),
                *extra)


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=container_env(), capture_output=True,
                          text=True, check=False)


def test_host_paths_are_mounted_read_only(
        image: str, home: Path, host_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = mesh_file(home, "hostpaths", image, "read")
    code, text = up(capsys, home, mesh)
    assert code == 0, text
    code, out = veil(capsys, "logs", "--mesh", str(mesh), "app")
    assert "host says: from the host" in out, out
    assert "host folder read-only" in out, out
    assert not (host_dir / "written-by-the-container").exists()
    name = f"veil-up-hostpaths-{RUN}-app"
    mounts = json.loads(podman("inspect", name, "--format", "{{json .Mounts}}").stdout)
    assert [(m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
        (str(host_dir), str(host_dir), False)]
    assert veil(capsys, "down", "-f", str(mesh))[0] == 0


def test_a_port_already_taken(image: str, home: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mesh = mesh_file(home, "port", image, "serve", port)
        code, text = up(capsys, home, mesh)
    assert code == 1, text
    assert f"service app: port 127.0.0.1:{port} is already taken on this machine" in text
    assert "APP_SERVICE_PORT" in text  # what to do
    code, table = veil(capsys, "ps", "-f", str(mesh))
    assert code == 0 and "app" in table and "failed" in table, table
    assert "already taken" in table
    assert veil(capsys, "down", "-f", str(mesh))[0] == 0
    assert veil(capsys, "ps", "-f", str(mesh))[1].startswith("no services")


def test_an_image_that_cannot_be_pulled(image: str, home: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    missing = image.replace("up-errors:1", f"does-not-exist-{RUN}:1")
    mesh = mesh_file(home, "pull", missing, "x")
    code, text = up(capsys, home, mesh)
    assert code == 1, text
    assert f"service app: the image {missing} cannot be pulled" in text, text
    assert "veil apply -f service.yaml" in text  # what to do
    code, table = veil(capsys, "ps", "-f", str(mesh))
    assert "failed" in table and "cannot be pulled" in table, table
    veil(capsys, "down", "-f", str(mesh))


def test_a_program_that_exits_at_once(image: str, home: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    mesh = mesh_file(home, "exit", image, "exit")
    code, text = up(capsys, home, mesh)
    assert code == 1, text
    assert "service app: the program exited at once with code 3" in text
    assert "no configuration for this mode" in text  # its last lines
    assert "veil logs SERVICE" in text  # what to do
    code, table = veil(capsys, "ps", "-f", str(mesh))
    assert "failed" in table and "yes" in table, table  # attested, then exited
    veil(capsys, "down", "-f", str(mesh))


def test_ctrl_c_while_waiting_removes_the_mesh(image: str, home: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """SIGINT to `veil up` while it waits for a service that never answers: the mesh's
    containers and network are gone, `veil up` exits 130, other meshes are untouched."""
    keep = mesh_file(home, "keep", image, "silent", free_port())
    code, text = up(capsys, home, keep, "--timeout", "1")
    assert code == 1, text  # never answers: not up, but running
    mesh = mesh_file(home, "ctrlc", image, "silent", free_port())
    name = f"up-ctrlc-{RUN}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "veil", "up", "-f", str(mesh), "--mode", "debug", "-t",
         str(home / "target"), "--timeout", "120"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not podman("ps", "--filter", f"label=dev.veil.mesh={name}", "--filter",
                         "status=running", "--format", "{{.Names}}").stdout.split():
            assert proc.poll() is None, proc.communicate()[0]
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the container never ran:\n{proc.communicate()[0]}")
            time.sleep(0.2)
        time.sleep(0.5)  # `veil up` is in its wait loop now
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert f"interrupted: removing the mesh {name}" in out
    left = podman("ps", "-a", "--filter", f"label=dev.veil.mesh={name}", "--format",
                  "{{.Names}}").stdout.split()
    assert left == []
    assert podman("network", "exists", f"veil-{name}").returncode != 0
    assert veil(capsys, "ps", "-f", str(mesh))[1].startswith("no services")
    kept = podman("ps", "--filter", f"label=dev.veil.mesh=up-keep-{RUN}", "--filter",
                  "status=running", "--format", "{{.Names}}").stdout.split()
    assert kept == [f"veil-up-keep-{RUN}-app"]
    veil(capsys, "down", "-f", str(keep))


def test_ps_and_down_without_f_act_on_this_directory(
        image: str, home: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "dir-a").mkdir()
    (home / "dir-b").mkdir()
    a = mesh_file(home, "dira", image, "a")
    b = mesh_file(home, "dirb", image, "b")
    monkeypatch.chdir(home / "dir-a")
    assert up(capsys, home, a)[0] == 0
    monkeypatch.chdir(home / "dir-b")
    assert up(capsys, home, b)[0] == 0
    code, table = veil(capsys, "ps")
    assert code == 0 and "done" in table
    code, out = veil(capsys, "logs", "app")  # this directory's mesh: no ambiguity
    assert "Hello b" in out and "Hello a" not in out
    assert veil(capsys, "down")[0] == 0  # only b
    assert podman("container", "exists", f"veil-up-dirb-{RUN}-app").returncode != 0
    assert podman("container", "exists", f"veil-up-dira-{RUN}-app").returncode == 0
    monkeypatch.chdir(home / "dir-a")
    code, table = veil(capsys, "ps")
    assert "done" in table
    assert veil(capsys, "down")[0] == 0
    assert podman("container", "exists", f"veil-up-dira-{RUN}-app").returncode != 0
