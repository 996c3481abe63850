"""Signing image digests in cosign's format and checking them, against a real registry on
loopback: what is signed (digest AND repository), which keys load, and every way a signature
that does not belong to the image is refused. Fast (one registry for the module, no builds),
so scripts/mutation.sh runs them against every mutant of `veil/image/signing.py`; the
cosign/podman/skopeo interplay is tested in tests/mesh/test_repo.py."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from tests.image.support import registry
from veil.errors import UserError
from veil.image.reference import parse_reference
from veil.image.registry import OCI_MANIFEST, Registry
from veil.image.signing import (
    PAYLOAD_TYPE,
    SIG_ANNOTATION,
    encrypt_cosign_key,
    load_public_key,
    sign_image,
    signature_tag,
    signing_key,
    verify_image,
)

__all__ = ["registry"]
pytestmark = [pytest.mark.integration]


def _push(ref: str, text: str) -> str:
    """A small image (config only) at `ref`; returns its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": [text]},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    r = parse_reference(ref)
    with Registry(r) as reg:
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": reg.put_blob(config), "size": len(config)},
                    "layers": []}
        return reg.put_manifest(r.tag or "latest", manifest, OCI_MANIFEST)


def _pem(key: Any, folder: Path, name: str) -> tuple[Path, Path]:
    priv = folder / f"{name}.pem"
    pub = folder / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VEIL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    return tmp_path / "config"


def _sig_artifact(registry: str, repo: str, digest: str) -> tuple[dict[str, Any], bytes]:
    with Registry(parse_reference(f"{registry}/{repo}:x")) as reg:
        _, manifest = reg.manifest(signature_tag(digest))
        return manifest, reg.blob(manifest["layers"][0]["digest"])


def test_sign_then_verify_with_the_default_key(registry: str, config: Path) -> None:
    image = f"{registry}/sign/app:1"
    digest = _push(image, "one")
    ref = sign_image(image, digest)
    assert ref == f"{registry}/sign/app:{digest.replace(':', '-')}.sig"
    assert signature_tag(digest) == digest.replace("sha256:", "sha256-") + ".sig"
    priv = config / "signing" / "cosign.key"
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert isinstance(signing_key(), ec.EllipticCurvePrivateKey)  # made once, then reused
    assert priv.read_bytes() == priv.read_bytes() and signing_key().private_numbers() == \
        signing_key(priv).private_numbers()
    assert verify_image(image, load_public_key()) == digest
    assert verify_image(f"{registry}/sign/app@{digest}", load_public_key()) == digest
    # cosign's simple-signing payload: this digest in this repository
    manifest, body = _sig_artifact(registry, "sign/app", digest)
    layer = manifest["layers"][0]
    assert layer["mediaType"] == PAYLOAD_TYPE
    assert json.loads(body) == {
        "critical": {"identity": {"docker-reference": f"{registry}/sign/app"},
                     "image": {"docker-manifest-digest": digest},
                     "type": "cosign container image signature"},
        "optional": None,
    }
    base64.b64decode(layer["annotations"][SIG_ANNOTATION], validate=True)


@pytest.mark.parametrize("kind", ["ec", "ed25519", "rsa", "cosign"])
def test_every_key_kind_signs_and_only_its_own_public_key_verifies(
    registry: str, config: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = f"{registry}/kinds/{kind}:1"
    digest = _push(image, kind)
    key: Any = {"ec": lambda: ec.generate_private_key(ec.SECP256R1()),
                "ed25519": ed25519.Ed25519PrivateKey.generate,
                "rsa": lambda: rsa.generate_private_key(65537, 2048),
                "cosign": lambda: ec.generate_private_key(ec.SECP256R1())}[kind]()
    priv, pub = _pem(key, tmp_path, kind)
    if kind == "cosign":
        priv.write_bytes(encrypt_cosign_key(key, "s3cret"))
        monkeypatch.setenv("COSIGN_PASSWORD", "s3cret")
    sign_image(image, digest, priv)
    assert verify_image(image, load_public_key(pub)) == digest
    _, other = _pem(ec.generate_private_key(ec.SECP256R1()), tmp_path, "other")
    with pytest.raises(UserError, match="not made with the given key"):
        verify_image(image, load_public_key(other))


def test_a_signature_copied_to_another_repository_or_digest_is_refused(
    registry: str, config: Path
) -> None:
    image = f"{registry}/copy/app:1"
    digest = _push(image, "original")
    sign_image(image, digest)
    key = load_public_key()
    manifest, body = _sig_artifact(registry, "copy/app", digest)
    # the same image pushed to another repository, the signature artifact copied beside it
    elsewhere = f"{registry}/copy/elsewhere:1"
    assert _push(elsewhere, "original") == digest
    changed = f"{registry}/copy/app:2"
    digest2 = _push(changed, "changed")
    for target, tag in ((elsewhere, signature_tag(digest)), (changed, signature_tag(digest2))):
        with Registry(parse_reference(target)) as reg:
            reg.put_blob(body)
            reg.put_blob(_config_of(registry, "copy/app", manifest))
            reg.put_manifest(tag, manifest, OCI_MANIFEST)
    with pytest.raises(UserError, match=r"for the repository .*copy/app, not .*copy/elsewhere"):
        verify_image(elsewhere, key)
    with pytest.raises(UserError, match=f"a signature of {digest}, not {digest2}"):
        verify_image(changed, key)
    assert verify_image(image, key) == digest  # control


def _config_of(registry: str, repo: str, manifest: dict[str, Any]) -> bytes:
    with Registry(parse_reference(f"{registry}/{repo}:x")) as reg:
        return reg.blob(manifest["config"]["digest"])


def test_unsigned_and_malformed_signatures_are_refused(registry: str, config: Path) -> None:
    image = f"{registry}/bad/app:1"
    digest = _push(image, "bad")
    signing_key()  # the default key pair exists
    key = load_public_key()
    with pytest.raises(UserError, match="has no signature"):
        verify_image(image, key)
    sign_image(image, digest)
    manifest, _ = _sig_artifact(registry, "bad/app", digest)
    good = manifest["layers"][0]["annotations"][SIG_ANNOTATION]

    def put(layers: list[dict[str, Any]]) -> None:
        with Registry(parse_reference(image)) as reg:
            reg.put_manifest(signature_tag(digest), {**manifest, "layers": layers}, OCI_MANIFEST)

    layer = manifest["layers"][0]
    put([{**layer, "mediaType": "application/octet-stream"}])
    with pytest.raises(UserError, match="holds no signature"):
        verify_image(image, key)
    for notes in ({}, {SIG_ANNOTATION: "*" + good}):
        put([{**layer, "annotations": notes}])
        with pytest.raises(UserError, match="a malformed signature"):
            verify_image(image, key)
    # a bad one next to a good one: the good one counts
    put([{**layer, "annotations": {}}, layer])
    assert verify_image(image, key) == digest


def test_keys_that_do_not_load_are_named(config: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="no signing key yet"):
        load_public_key()
    with pytest.raises(UserError, match="does not exist"):
        signing_key(tmp_path / "nosuch.key")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    with pytest.raises(UserError, match="not a cosign key or a PEM private key"):
        signing_key(junk)
    with pytest.raises(UserError, match="cannot read the public key"):
        load_public_key(junk)
    dsa_key = dsa.generate_private_key(2048)
    dpriv, dpub = _pem(dsa_key, tmp_path, "dsa")
    with pytest.raises(UserError, match="an ECDSA, Ed25519 or RSA key is needed"):
        signing_key(dpriv)
    with pytest.raises(UserError, match="an ECDSA, Ed25519 or RSA public key is needed"):
        load_public_key(dpub)
    key = ec.generate_private_key(ec.SECP256R1())
    cosign = tmp_path / "cosign.key"
    cosign.write_bytes(encrypt_cosign_key(key, "right"))
    with pytest.raises(UserError, match="is an encrypted cosign key"):
        signing_key(cosign)
    monkeypatch.setenv("COSIGN_PASSWORD", "wrong")
    with pytest.raises(UserError, match="wrong COSIGN_PASSWORD"):
        signing_key(cosign)
    monkeypatch.setenv("COSIGN_PASSWORD", "right")
    loaded = signing_key(cosign)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_a_new_cosign_key_file_has_cosigns_parameters() -> None:
    """What cosign writes and reads: scrypt N=32768, r=8, p=1 over a 32-byte salt, NaCl
    secretbox with a 24-byte nonce."""
    pem = encrypt_cosign_key(ec.generate_private_key(ec.SECP256R1()), "pw").decode()
    assert pem.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = "".join(pem.splitlines()[1:-1])
    doc = json.loads(base64.b64decode(body))
    assert doc["kdf"] == {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                          "salt": doc["kdf"]["salt"]}
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24


def test_a_key_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.key"
    folder.mkdir()
    with pytest.raises(UserError, match=r"cannot read the signing key .*a-folder\.key"):
        signing_key(folder)


def test_a_signature_by_another_key_beside_the_right_one(registry: str, config: Path,
                                                          tmp_path: Path) -> None:
    image = f"{registry}/two/app:1"
    digest = _push(image, "two")
    other, _ = _pem(ec.generate_private_key(ec.SECP256R1()), tmp_path, "other")
    sign_image(image, digest, other)
    manifest, _ = _sig_artifact(registry, "two/app", digest)
    foreign = manifest["layers"][0]
    sign_image(image, digest)  # the default key's signature replaces the artifact
    manifest, _ = _sig_artifact(registry, "two/app", digest)
    with Registry(parse_reference(image)) as reg:
        reg.put_manifest(signature_tag(digest),
                         {**manifest, "layers": [foreign, manifest["layers"][0]]}, OCI_MANIFEST)
    assert verify_image(image, load_public_key()) == digest
