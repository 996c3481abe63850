"""examples/tls-mesh for real: two services of the project's own writing talk HTTPS with
certificates CAS issues from the mesh's `x509-ca` secret and injects only after attestation.

Beside the success line, the attacker's views: the certificate and key are in no image layer,
no file a dry run writes, no `veil up`/`ps`/`logs` output; and a client that trusts the
system's CAs (here: the host, where the store's port is published) refuses the store, whose
certificate only the mesh CA vouches for.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.conftest import free_port
from tests.image.support import ROOT, need
from veil.cli import main
from veil.image.tools import container_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = ROOT / "examples" / "tls-mesh"
RUN = uuid.uuid4().hex[:8]
SUCCESS = "client: store answered 'hello over mesh TLS' over TLS"


def veil(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out + cap.err


class Mesh:
    def __init__(self, home: Path, file: Path, port: int, images: dict[str, str],
                 outputs: list[str]) -> None:
        self.home, self.file, self.port, self.images, self.outputs = (
            home, file, port, images, outputs)


@pytest.fixture(scope="module")
def mesh(registry: str, base_image: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Mesh]:
    """The example copied, its images built into the test registry, and `veil up` run."""
    need("buildah", "podman")
    home = tmp_path_factory.mktemp("tls-mesh")
    work = home / "example"
    shutil.copytree(EXAMPLE, work)
    capsys_free: list[str] = []
    images: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(home / "home"))
        mp.setenv("VEIL_CONFIG_DIR", str(home / "config"))
        port = free_port()
        for svc in ("store", "client"):
            mp.chdir(work / svc)
            manifest = work / svc / "service.yaml"
            text = manifest.read_text().replace('value: "8443"', f'value: "{port}"')
            image = f"{registry}/test/tls_{svc}-{RUN}:1"
            text = text.replace(f"to: 127.0.0.1:5000/veil/tls_{svc}:latest",
                                f"to: {image}\n  from: {base_image}")
            assert image in text
            manifest.write_text(text)
            images[svc] = image
            assert main(["apply", "-f", str(manifest), "-t", str(home / svc / "target")]) == 0
        mp.chdir(home)
        text = (work / "mesh.yaml").read_text()
        text = text.replace("namespace: tls-mesh", f"namespace: tls-mesh-{RUN}")
        text = text.replace('value: "8443"', f'value: "{port}"')
        for svc, image in images.items():
            text = text.replace(f"127.0.0.1:5000/veil/tls_{svc}:latest", image)
        file = work / "mesh.yaml"
        file.write_text(text)
        try:
            yield Mesh(home, file, port, images, capsys_free)
        finally:
            main(["down", "-f", str(file), "--volumes"])


@pytest.fixture(autouse=True)
def _same_home(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_HOME", str(mesh.home / "home"))
    monkeypatch.setenv("VEIL_CONFIG_DIR", str(mesh.home / "config"))


def _served_certificate(port: int) -> x509.Certificate:
    """The store's certificate as anyone on the network sees it (no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_client_calls_store_over_mesh_tls(mesh: Mesh, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    code, text = veil(capsys, "up", "-f", str(mesh.file), "--mode", "debug", "-t",
                      str(mesh.home / "target"))
    mesh.outputs.append(text)
    if code != 0:
        logs = [veil(capsys, "logs", "--mesh", str(mesh.file), s)[1]
                for s in ("store", "client")]
        mesh.outputs.extend(logs)
        pytest.fail(text + "\n".join(logs))
    code, out = veil(capsys, "logs", "--mesh", str(mesh.file), "client")
    mesh.outputs.append(out)
    assert code == 0, out
    assert SUCCESS in out, out
    code, out = veil(capsys, "logs", "--mesh", str(mesh.file), "store")
    mesh.outputs.append(out)
    assert "serving HTTPS" in out and "PUT /greeting" in out, out
    code, table = veil(capsys, "ps", "-f", str(mesh.file))
    mesh.outputs.append(table)
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in table.splitlines()
             if ln.startswith("│")]
    rows = {r[0]: r for r in cells}
    assert "up" in rows["store"] and "yes" in rows["store"], table
    assert "done" in rows["client"] and "yes" in rows["client"], table
    # the certificate store serves: issued by the mesh CA for the name `store`
    cert = _served_certificate(mesh.port)
    assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tls-mesh CA"
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.DNSName) == ["store"]


def test_the_system_trust_store_refuses_the_store(mesh: Mesh) -> None:
    """Only the mesh CA vouches for store: a client with the system's CAs does not connect."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # even ignoring the name, the chain does not verify
    with socket.create_connection(("127.0.0.1", mesh.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        ctx.wrap_socket(raw)
    # control: the same connection with verification off works (the store is up)
    assert _served_certificate(mesh.port).subject.rfc4514_string() == "CN=store"


def _needles(mesh: Mesh) -> list[bytes]:
    """What must not leak: the served certificate (PEM body and DER) and any private key."""
    der = _served_certificate(mesh.port).public_bytes(serialization.Encoding.DER)
    b64 = base64.b64encode(der)
    return [b64[100:164], der[64:128], b"PRIVATE KEY"]


def _scan(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            found += [f"{p}: {n!r}" for n in needles if n in data]
    return found


def test_no_key_or_certificate_in_images_files_or_output(
        mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    needles = _needles(mesh)
    # the outputs of up, logs and ps
    for text in mesh.outputs:
        assert not any(n.decode("latin-1") in text for n in needles), text
        assert "BEGIN CERTIFICATE" not in text
    # files a dry run writes (chart, policy, sessions) and those `veil up` wrote
    code, text = veil(capsys, "apply", "-f", str(mesh.file), "--dry-run", "--mode", "debug",
                      "-t", str(mesh.home / "dry"))
    assert code == 0, text
    assert not any(n.decode("latin-1") in text for n in needles)
    written = list((mesh.home / "dry").rglob("*"))
    assert any(p.suffix in (".yaml", ".json") for p in written), written
    for root in (mesh.home / "dry", mesh.home / "target"):
        assert _scan(root, needles) == []
    # the images: every file of both, mounted
    env = container_env()
    for image in mesh.images.values():
        cid = subprocess.run(["buildah", "from", "--pull-never", image], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        try:
            mnt = subprocess.run(["buildah", "mount", cid], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()
            grep = subprocess.run(["grep", "-rlaF", "-e", needles[0].decode(), mnt],
                                  capture_output=True, text=True)
            assert grep.returncode == 1 and grep.stdout == "", grep.stdout
            for d in ("etc/store", "etc/client"):
                assert not (Path(mnt) / d / "tls").exists()
            assert _scan(Path(mnt) / "app", needles) == []
        finally:
            subprocess.run(["buildah", "rm", cid], env=env, capture_output=True)
