"""The mesh's `repo` section against a real registry, and the signatures checked by podman.

`repo.destination` copies every service image by digest through the registry API; the chart
runs the copies; `repo.signature: cosign.key` signs them in cosign's format. podman, with a
`policy.json` that requires `sigstoreSigned` by the public key, pulls the signed copy and
refuses an unsigned one and one re-signed with another key; `veil verify` also refuses a
signature copied to another repository.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cas.conftest import CasServer
from tests.image.support import have, registry
from veil.cli import main
from veil.image.reference import parse_reference
from veil.image.registry import OCI_MANIFEST, Registry
from veil.image.signing import encrypt_cosign_key, sign_image, signature_tag
from veil.image.tools import container_env
from veil.manifest.description import ServiceDescription
from veil.manifest.load import load_mesh
from veil.mesh import InMemory, MeshOptions, apply_mesh

__all__ = ["registry"]
pytestmark = [pytest.mark.integration]


def push_tiny_image(ref: str) -> str:
    """A one-layer image made through the registry API; returns its digest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(raw).hexdigest()]}}).encode()
    r = parse_reference(ref)
    with Registry(r) as reg:
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": reg.put_blob(config), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": reg.put_blob(layer), "size": len(layer)}]}
        return reg.put_manifest(r.tag or "latest", manifest, OCI_MANIFEST)


def keypair(folder: Path, name: str, password: str = "pw") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    (folder / f"{name}.key").write_bytes(encrypt_cosign_key(key, password))
    (folder / f"{name}.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return folder / f"{name}.key", folder / f"{name}.pub"


MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: [image, security, access, attestation]
    cas_url: {cas}
policy:
  namespace: {ns}
repo:
  destination: {registry}/mirror
  signature: cosign.key
services:
  - name: app
    image: {registry}/src/app:1
"""


@pytest.fixture(scope="module")
def signed(registry: str, mesh_cas: CasServer, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("repo")
    digest = push_tiny_image(f"{registry}/src/app:1")
    _key, pub = keypair(work, "cosign")
    other_key, other_pub = keypair(work, "other")
    desc = ServiceDescription(name="app", image=f"{registry}/src/app:1", command="true",
                              argv=["true"], pwd="/", manifest_digest="sha256:0",
                              measurement="ab" * 32)
    (work / "mesh.yaml").write_text(MESH.format(cas=mesh_cas.addr, ns="repo1",
                                                registry=registry))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COSIGN_PASSWORD", "pw")
        mp.setenv("VEIL_CONFIG_DIR", str(work / "config"))
        from veil.mesh.trust import trust

        trust(mesh_cas.addr, mesh_cas.key)
        result = apply_mesh(load_mesh(work / "mesh.yaml"),
                            MeshOptions(mode="debug", target=work / "t"),
                            descriptions=InMemory({desc.image: desc}, {desc.image: digest}))
    return {"work": work, "digest": digest, "result": result, "pub": pub,
            "other_key": other_key, "other_pub": other_pub}


def test_copy_by_digest_signed_and_in_the_chart(signed: dict[str, Any], registry: str) -> None:
    result = signed["result"]
    copy = f"{registry}/mirror/app@{signed['digest']}"
    assert result.images["app"] == copy
    assert result.signatures == [f"{registry}/mirror/app:{signature_tag(signed['digest'])}"]
    with Registry(parse_reference(f"{registry}/mirror/app:1")) as reg:
        assert reg.manifest()[0] == signed["digest"]  # the same bytes, the same digest
    values = (result.chart_dir / "values.yaml").read_text()
    assert f"repository: \"{registry}/mirror/app\"" in values or \
        f"repository: {registry}/mirror/app" in values


def test_veil_verify_checks_key_digest_and_repository(signed: dict[str, Any], registry: str,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    pub, other = str(signed["pub"]), str(signed["other_pub"])
    assert main(["verify", f"{registry}/mirror/app:1", "--key", pub]) == 0
    assert main(["verify", f"{registry}/mirror/app:1", "--key", other]) == 2
    assert "not made with the given key" in capsys.readouterr().err
    assert main(["verify", f"{registry}/src/app:1", "--key", pub]) == 2  # the source: unsigned
    assert "has no signature" in capsys.readouterr().err
    # the signature artifact copied beside the same image in another repository
    from veil.image.copy import copy_image

    copy_image(f"{registry}/mirror/app:1", f"{registry}/elsewhere")
    copy_image(f"{registry}/mirror/app:{signature_tag(signed['digest'])}",
               f"{registry}/elsewhere")
    assert main(["verify", f"{registry}/elsewhere/app:1", "--key", pub]) == 2
    assert f"for the repository {registry}/mirror/app" in capsys.readouterr().err


def _podman_pull(ref: str, pub: Path, work: Path,
                 registry: str) -> subprocess.CompletedProcess[str]:
    home = work / "podman-home"
    regd = home / ".config" / "containers" / "registries.d"
    regd.mkdir(parents=True, exist_ok=True)
    (regd / "veil-test.yaml").write_text(
        f"docker:\n  {registry}:\n    use-sigstore-attachments: true\n")
    policy = work / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {"docker": {registry: [{
            "type": "sigstoreSigned", "keyPath": str(pub),
            "signedIdentity": {"type": "matchRepository"}}]}}}))
    env = dict(container_env(), HOME=str(home))
    return subprocess.run(["podman", "pull", "--tls-verify=false", "--signature-policy",
                           str(policy), ref], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.mark.skipif(not have("podman"), reason="podman missing")
def test_podman_pulls_the_signed_copy_and_refuses_others(signed: dict[str, Any],
                                                         registry: str) -> None:
    work, pub = signed["work"], signed["pub"]
    ok = _podman_pull(f"{registry}/mirror/app:1", pub, work, registry)
    if "sigstore disabled" in ok.stderr:
        # Debian patches sigstore verification out of containers/image (podman and skopeo
        # say "Debian-local change: sigstore disabled"); the interoperability test below
        # checks the format against skopeo's own signer instead
        pytest.skip("this podman cannot verify sigstore signatures (Debian-local change)")
    assert ok.returncode == 0, ok.stderr
    unsigned = _podman_pull(f"{registry}/src/app:1", pub, work, registry)
    assert unsigned.returncode != 0 and "signature" in unsigned.stderr.lower()
    # re-signed with another key: the artifact now holds a signature the policy's key refuses
    from veil.image.copy import copy_image

    copy = copy_image(f"{registry}/mirror/app:1", f"{registry}/resigned")
    import os

    os.environ["COSIGN_PASSWORD"] = "pw"
    try:
        sign_image(copy, signed["digest"], signed["other_key"])
    finally:
        del os.environ["COSIGN_PASSWORD"]
    resigned = _podman_pull(f"{registry}/resigned/app:1", pub, work, registry)
    assert resigned.returncode != 0, resigned.stdout
    shutil.rmtree(work / "podman-home", ignore_errors=True)


@pytest.mark.skipif(not have("skopeo"), reason="skopeo missing")
def test_skopeo_signs_in_the_format_veil_verifies(signed: dict[str, Any], registry: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """skopeo (containers/image's sigstore signer) signs a copy with our cosign.key: veil
    reads that signature, and writes the same payload shape itself."""
    work = signed["work"]
    (work / "pw").write_text("pw")
    out = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--sign-by-sigstore-private-key", str(work / "cosign.key"),
         "--sign-passphrase-file", str(work / "pw"),
         f"docker://{registry}/src/app:1", f"docker://{registry}/by-skopeo/app:1"],
        capture_output=True, text=True, env=container_env(), timeout=120, check=False)
    if "sigstore disabled" in out.stderr:
        pytest.skip("this skopeo cannot make sigstore signatures (Debian-local change)")
    assert out.returncode == 0, out.stderr
    assert main(["verify", f"{registry}/by-skopeo/app:1", "--key", str(signed["pub"])]) == 0
    assert main(["verify", f"{registry}/by-skopeo/app:1", "--key",
                 str(signed["other_pub"])]) == 2
    capsys.readouterr()
    with Registry(parse_reference(f"{registry}/by-skopeo/app:1")) as a, \
            Registry(parse_reference(f"{registry}/mirror/app:1")) as b:
        tag = signature_tag(signed["digest"])
        theirs, ours = a.manifest(tag)[1], b.manifest(tag)[1]
        assert [x["mediaType"] for x in theirs["layers"]] == \
            [x["mediaType"] for x in ours["layers"]]
        assert set(theirs["layers"][0]["annotations"]) >= set(ours["layers"][0]["annotations"])
        p_theirs = json.loads(a.blob(theirs["layers"][0]["digest"]))
        p_ours = json.loads(b.blob(ours["layers"][0]["digest"]))
    assert p_theirs["critical"]["type"] == p_ours["critical"]["type"]
    assert p_theirs["critical"]["image"] == p_ours["critical"]["image"]


def test_a_description_from_the_registry_comes_with_its_digest(registry: str) -> None:
    """An image known only by its registry label is still pinned by digest in the chart."""
    from veil.manifest.description import LABEL_KEY
    from veil.mesh import IndexThenRegistry

    desc = ServiceDescription(name="lab", image=f"{registry}/src/labelled:1", command="true",
                              argv=["true"], pwd="/", manifest_digest="sha256:0")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": {LABEL_KEY: desc.to_json()}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    r = parse_reference(desc.image)
    with Registry(r) as reg:
        digest = reg.put_manifest("1", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": reg.put_blob(config), "size": len(config)},
            "layers": []}, OCI_MANIFEST)
    found = IndexThenRegistry().find(desc.image)
    assert not isinstance(found, str)
    assert found.description == desc and found.digest == digest
