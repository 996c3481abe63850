"""`veil apply -f service.yaml` against real buildah, podman, skopeo and docker-registry."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.image.support import hello_service, need
from veil.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def veil(capsys: pytest.CaptureFixture[str] | None, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    out = ""
    if capsys is not None:
        cap = capsys.readouterr()
        out = cap.out + cap.err
    return rc, out


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def built(registry: str, base_image: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Path, dict[str, object], str]]:
    """The hello-user service built and pushed once: (manifest, description, command output)."""
    need("buildah", "podman", "skopeo")
    tmp = tmp_path_factory.mktemp("hello")
    manifest = hello_service(tmp / "src", registry, base_image)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(tmp / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(tmp / "config"))
        mp.chdir(tmp / "src")
        rc = main(["apply", "-f", str(manifest)])
        assert rc == 0
        desc = json.loads((tmp / "src/target/hello/description.json").read_text())
        yield manifest, desc, str(tmp)


def test_image_carries_its_description_and_measurement(built: tuple[Path, dict[str, object],
                                                                    str], registry: str) -> None:
    _, desc, _ = built
    proc = run("skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/test/hello:1")
    assert proc.returncode == 0, proc.stderr
    labels = json.loads(proc.stdout)["Labels"]
    assert json.loads(labels["dev.veil.service-description"]) == desc
    assert desc["command"] == "python3 print_env.py" and desc["pwd"] == "/python"
    assert isinstance(desc["measurement"], str) and len(desc["measurement"]) == 64


def test_launcher_measures_the_same_value_inside_the_container(
    built: tuple[Path, dict[str, object], str], registry: str
) -> None:
    _, desc, _ = built
    proc = run("podman", "run", "--rm", "--init", "--tls-verify=false",
               f"{registry}/test/hello:1", "--print-measurement")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == desc["measurement"]


def test_launcher_refuses_to_start_unconfigured(built: tuple[Path, dict[str, object], str],
                                                registry: str) -> None:
    proc = run("podman", "run", "--rm", "--init", "--tls-verify=false",
               f"{registry}/test/hello:1")
    assert proc.returncode != 0
    assert "SCONE_CONFIG_ID" in proc.stderr
    assert "Hello" not in proc.stdout


def test_inspect_prints_the_description(built: tuple[Path, dict[str, object], str],
                                        registry: str, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    _, desc, _ = built
    rc, out = veil(capsys, "inspect", f"{registry}/test/hello:1")
    assert rc == 0
    assert json.loads(out) == desc


def test_rebuild_gives_the_same_measurement_and_image(
    built: tuple[Path, dict[str, object], str], registry: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    manifest, desc, _ = built
    monkeypatch.chdir(tmp_path)
    before = run("buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}",
                 f"{registry}/test/hello:1").stdout
    rc, out = veil(capsys, "apply", "-f", str(manifest), "--no-push")
    assert rc == 0, out
    again = json.loads((tmp_path / "target/hello/description.json").read_text())
    assert again["measurement"] == desc["measurement"]
    after = run("buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}",
                f"{registry}/test/hello:1").stdout
    assert before == after


def test_no_push_keeps_the_image_local(registry: str, base_image: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    need("buildah")
    manifest = hello_service(tmp_path, registry, base_image, name="local-only")
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest), "--no-push")
    assert rc == 0, out
    assert "local only" in out
    assert run("buildah", "inspect", "--type", "image", f"{registry}/test/local-only:1"
               ).returncode == 0
    resp = httpx.get(f"http://{registry}/v2/test/local-only/manifests/1")
    assert resp.status_code == 404


def test_dry_run_writes_context_and_description_only(registry: str, base_image: str,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    manifest = hello_service(tmp_path, registry, base_image, name="dry")
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest), "--dry-run")
    assert rc == 0, out
    ctx = tmp_path / "target" / "dry"
    assert (ctx / "Containerfile").exists() and (ctx / "description.json").exists()
    assert (ctx / "rootfs/python/print_env.py").exists()
    assert run("buildah", "inspect", "--type", "image", f"{registry}/test/dry:1").returncode != 0
    rc, out = veil(capsys, "inspect", "--local", f"{registry}/test/dry:1")
    assert rc == 0 and json.loads(out)["name"] == "dry"


def test_failed_run_step_is_explained_and_leaves_no_target(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = hello_service(tmp_path, registry, base_image, name="badrun",
                             extra="  run:\n    - echo about to fail && false\n")
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 1
    assert "the build step `RUN echo about to fail && false`" in out
    assert "hint:" in out and "Traceback" not in out
    assert not (tmp_path / "target" / "badrun").exists()
    assert [p.name for p in (tmp_path / "target").iterdir()] == []


def test_missing_copy_entry_is_a_user_error(registry: str, base_image: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest = hello_service(tmp_path, registry, base_image, name="nocopy",
                             extra="    - data/missing.csv\n")
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 2
    assert "build.copy[1]" in out and "data/missing.csv" in out
    assert not (tmp_path / "target" / "nocopy").exists()


def test_unreachable_registry(registry: str, base_image: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    manifest = hello_service(tmp_path, registry, base_image, name="nowhere")
    closed = f"127.0.0.1:{free_port()}"
    manifest.write_text(manifest.read_text().replace(f"to: {registry}/", f"to: {closed}/"))
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 1
    assert f"pushing {closed}/test/nowhere:1 to the registry {closed} failed" in out
    assert "--no-push" in out and "Traceback" not in out


def test_base_image_that_cannot_be_pulled(registry: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    need("buildah")
    manifest = hello_service(tmp_path, registry, f"{registry}/no/such-base:1", name="nobase")
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 1
    assert f"the base image {registry}/no/such-base:1 cannot be pulled" in out
    assert "veil base create python" in out
    assert not (tmp_path / "target").exists()


def test_a_build_base_without_its_own_runtime_base_is_refused(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A build base copied without its runtime base, then given a runtime base made from another
    root filesystem (a relabelled copy): each build stops before anything is written, naming the
    two images and how to make them again."""
    need("buildah", "skopeo")
    from veil.image.runtime import RUNTIME_OF_LABEL

    orphan = f"{registry}/test/orphan-base:1"
    proc = run("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
               f"docker://{base_image}", f"docker://{orphan}")
    assert proc.returncode == 0, proc.stderr
    manifest = hello_service(tmp_path, registry, orphan, name="orphan")
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 1, out
    assert f"the build base {orphan} names its runtime base {orphan}-runtime" in out, out
    assert f"veil base create python --to {orphan}" in out, out
    assert not (tmp_path / "target").exists()

    ctr = run("buildah", "from", "--tls-verify=false", f"{base_image}-runtime").stdout.strip()
    assert ctr
    try:
        assert run("buildah", "config", "--label", f"{RUNTIME_OF_LABEL}=sha256:{'0' * 64}",
                   ctr).returncode == 0
        proc = run("buildah", "commit", "-q", ctr, f"{orphan}-runtime")
        assert proc.returncode == 0, proc.stderr
        proc = run("buildah", "push", "--tls-verify=false", f"{orphan}-runtime")
        assert proc.returncode == 0, proc.stderr
    finally:
        run("buildah", "rm", ctr)
        run("buildah", "rmi", f"{orphan}-runtime")
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 1, out
    assert (f"the runtime base {orphan}-runtime was not made from the root filesystem of the "
            f"build base {orphan}") in out, out
    assert not (tmp_path / "target").exists()


def test_signature_verifies_and_fails_on_other_key_or_changed_image(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = hello_service(tmp_path / "src", registry, base_image, name="signed",
                             extra="  signature:\n    sign: true\n")
    monkeypatch.chdir(tmp_path / "src")
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 0, out
    image = f"{registry}/test/signed:1"
    rc, out = veil(capsys, "verify", image)
    assert rc == 0 and "verified" in out, out

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rc, out = veil(capsys, "verify", image, "--key", str(other))
    assert rc == 2 and "not made with the given key" in out

    # the same tag, rebuilt with one changed byte and pushed without a signature
    (tmp_path / "src/print_env.py").write_text(
        (tmp_path / "src/print_env.py").read_text() + "#")
    manifest.write_text(manifest.read_text().replace("sign: true", "sign: false"))
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 0, out
    rc, out = veil(capsys, "verify", image)
    assert rc == 2 and "has no signature" in out
    assert os.path.exists(tmp_path / "veil-config" / "signing" / "cosign.key")


def test_app_only_change_is_pushed_without_a_build(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = hello_service(tmp_path, registry, base_image, name="fast")
    monkeypatch.chdir(tmp_path)
    image = f"{registry}/test/fast:1"
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 0 and "without a build" not in out, out
    first = httpx.get(f"http://{registry}/v2/test/fast/manifests/1",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    (tmp_path / "print_env.py").write_text((tmp_path / "print_env.py").read_text() + "# 1\n")
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 0 and "without a build" in out, out
    desc = json.loads((tmp_path / "target/fast/description.json").read_text())
    # the stale local tag is gone, so podman pulls what was pushed; it measures as described
    proc = run("podman", "run", "--rm", "--init", "--tls-verify=false", image,
               "--print-measurement")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == desc["measurement"]
    second = httpx.get(f"http://{registry}/v2/test/fast/manifests/1",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert second.headers["Docker-Content-Digest"] != first.headers["Docker-Content-Digest"]
    labels = json.loads(run("skopeo", "inspect", "--tls-verify=false",
                            f"docker://{image}").stdout)["Labels"]
    assert json.loads(labels["dev.veil.service-description"]) == desc
    # nothing changed: the pushed image stands
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 0 and second.headers["Docker-Content-Digest"] in out
    # the fast path is no shortcut around the measurement: a changed command is a full build
    manifest.write_text(manifest.read_text().replace("python3 print_env.py",
                                                     "python3 -B print_env.py"))
    rc, out = veil(capsys, "apply", "-f", str(manifest))
    assert rc == 0 and "without a build" not in out, out


def test_requirements_are_installed_from_host_wheels_and_measured(
    registry: str, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pip resolves on the host; the image gets the installed tree without reaching an index."""
    program = "import six\nprint('six', six.__version__)\n"
    manifest = hello_service(tmp_path, registry, base_image, name="reqs", program=program)
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    manifest.write_text(manifest.read_text().replace(
        "  copy:\n", "  requirements: requirements.txt\n  copy:\n"))
    monkeypatch.chdir(tmp_path)
    rc, out = veil(capsys, "apply", "-f", str(manifest), "--no-push")
    assert rc == 0, out
    desc = json.loads((tmp_path / "target/reqs/description.json").read_text())
    site = tmp_path / "target/reqs/rootfs/usr/local/lib/python3.11/dist-packages"
    assert (site / "six.py").exists()
    assert "COPY rootfs/usr/local/lib/python3.11/dist-packages/" in (
        tmp_path / "target/reqs/Containerfile").read_text()
    image = f"{registry}/test/reqs:1"
    proc = run("podman", "run", "--rm", "--init", image, "--print-measurement")
    assert proc.returncode == 0 and proc.stdout.strip() == desc["measurement"], proc.stderr
    proc = run("podman", "run", "--rm", "--init", "--network", "none", "--entrypoint",
               "python3", image, "-c", "import six; print(six.__file__)")
    assert proc.stdout.strip() == "/usr/local/lib/python3.11/dist-packages/six.py", proc.stderr


def test_base_is_pinned_by_its_registry_digest(
    built: tuple[Path, dict[str, object], str], base_image: str
) -> None:
    _, desc, _ = built
    # the service runs on the runtime base published beside the build base named in `from`
    runtime = f"{base_image}-runtime"
    proc = run("skopeo", "inspect", "--tls-verify=false", f"docker://{runtime}")
    assert desc["base_digest"] == json.loads(proc.stdout)["Digest"]
    assert desc["base_image"] == runtime


FINAL_IMAGE_CHECK = r"""
import os
for p in ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/dash", "/usr/bin/ls",
          "/var/lib/dpkg", "/usr/bin/pip3", "/usr/lib/python3/dist-packages/pip",
          "/usr/lib/python3/dist-packages/setuptools"):
    if os.path.lexists(p):
        print("present:", p)
n = 0
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    n += len(dirs) + len(files)
print("entries:", n)
"""


def test_the_service_image_holds_no_shell_no_pip_no_package_database(
    built: tuple[Path, dict[str, object], str], registry: str
) -> None:
    """What the launcher measures at every start is the runtime: the hello-user image has no
    shell, no pip and no dpkg database, and fewer than 1,500 entries (the build base: 5,531)."""
    image = f"{registry}/test/hello:1"
    proc = run("podman", "run", "--rm", "--tls-verify=false", "--entrypoint", "/usr/bin/python3",
               image, "-c", FINAL_IMAGE_CHECK)
    assert proc.returncode == 0, proc.stderr
    assert "present:" not in proc.stdout, proc.stdout
    assert int(proc.stdout.split("entries:")[1].split()[0]) < 1500, proc.stdout
    proc = run("podman", "run", "--rm", "--tls-verify=false", "--entrypoint", "/bin/sh", image,
               "-c", "true")
    assert proc.returncode != 0
    # the launcher's modules come from the bytecode in the image (its -B writes none)
    proc = run("podman", "run", "--rm", "--tls-verify=false", "--entrypoint", "/usr/bin/python3",
               image, "-I", "-S", "-B", "-v", "-c",
               "import sys; sys.path.insert(0, '/opt/veil'); import veil.runtime.launcher")
    for module in ("launcher", "measure", "guard"):
        assert (f"code object from '/opt/veil/veil/runtime/__pycache__/{module}.cpython-"
                in proc.stderr), proc.stderr[-3000:]
