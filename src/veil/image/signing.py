"""Signing image digests and checking the signatures (Ed25519, `cryptography`).

The key pair lives in `$VEIL_CONFIG_DIR/signing/` (made on first use; the private key 0600).
A signature is stored beside the image, in the same repository, as an OCI artifact tagged
`sha256-<hex>.sig` (the convention cosign made familiar): its one layer is the signed payload
(JSON naming the repository and the manifest digest), the signature and the public key travel in
the layer's annotations. A changed image has another digest and so no signature; a signature
made with another key does not verify.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_bytes
from veil.image.reference import Reference, parse_reference
from veil.image.registry import OCI_MANIFEST, NotFound, Registry
from veil.paths import config_dir

__all__ = [
    "PAYLOAD_TYPE",
    "load_public_key",
    "sign_image",
    "signature_tag",
    "signing_key",
    "verify_image",
]

PAYLOAD_TYPE = "application/vnd.dev.veil.signature.v1+json"
CONFIG_TYPE = "application/vnd.dev.veil.signature.config.v1+json"
SIG_ANNOTATION = "dev.veil.signature"
KEY_ANNOTATION = "dev.veil.public-key"


def _key_paths() -> tuple[Path, Path]:
    d = config_dir() / "signing"
    return d / "ed25519.key", d / "ed25519.pub"


def signing_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The user's signing key (`path`, else the default one, created on first use)."""
    priv_path, pub_path = (path, None) if path else _key_paths()
    if priv_path.exists():
        key = serialization.load_pem_private_key(priv_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise UserError(f"{priv_path} is not an Ed25519 private key")
        return key
    if path is not None:
        raise UserError(f"signing key {path} does not exist")
    key = Ed25519PrivateKey.generate()
    atomic_write_bytes(priv_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ), mode=0o600)
    assert pub_path is not None
    atomic_write_bytes(pub_path, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ))
    return key


def load_public_key(path: Path | None = None) -> Ed25519PublicKey:
    if path is None:
        path = _key_paths()[1]
        if not path.exists():
            raise UserError(
                f"no signing key yet ({path})",
                hint="sign an image first (build.signature.sign: true) or pass --key PUBLIC.pem",
            )
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the public key {path}: {err}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path} is not an Ed25519 public key")
    return key


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def _payload(ref: Reference, digest: str) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": ref.name},
                        "image": {"docker-manifest-digest": digest},
                        "type": "dev.veil.signature"}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign_image(image: str, digest: str, key_path: Path | None = None) -> str:
    """Sign `digest` of `image` and push the signature; returns the signature's reference."""
    ref = parse_reference(image)
    key = signing_key(key_path)
    payload = _payload(ref, digest)
    sig = base64.b64encode(key.sign(payload)).decode()
    pub = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo,
    )).decode()
    tag = signature_tag(digest)
    with Registry(ref) as reg:
        config = b"{}"
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": reg.put_blob(config),
                       "size": len(config)},
            "layers": [{
                "mediaType": PAYLOAD_TYPE, "digest": reg.put_blob(payload), "size": len(payload),
                "annotations": {SIG_ANNOTATION: sig, KEY_ANNOTATION: pub},
            }],
        }
        reg.put_manifest(tag, manifest, OCI_MANIFEST)
    return f"{ref.name}:{tag}"


def verify_image(image: str, key: Ed25519PublicKey) -> str:
    """Check the signature of `image` against `key`; returns the verified digest."""
    ref = parse_reference(image)
    with Registry(ref) as reg:
        digest, _ = reg.manifest()
        if ref.digest and digest != ref.digest:
            raise OperationalError(f"{image}: the registry returned a manifest of {digest}")
        try:
            _, sig_manifest = reg.manifest(signature_tag(digest))
        except NotFound:
            raise UserError(
                f"{ref.name}@{digest} has no signature",
                hint="the image changed since it was signed, or it was never signed",
            ) from None
        layers = [x for x in sig_manifest.get("layers", []) if x.get("mediaType") == PAYLOAD_TYPE]
        if not layers:
            raise UserError(f"the signature artifact of {ref.name}@{digest} holds no signature")
        layer = layers[0]
        payload = reg.blob(layer["digest"])
    try:
        doc = json.loads(payload)
        signed = doc["critical"]["image"]["docker-manifest-digest"]
        sig = base64.b64decode(layer["annotations"][SIG_ANNOTATION])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"the signature of {ref.name}@{digest} is malformed") from None
    if signed != digest:
        raise UserError(f"the signature of {ref.name} names {signed}, not {digest}")
    try:
        key.verify(sig, payload)
    except InvalidSignature:
        raise UserError(
            f"the signature of {ref.name}@{digest} was not made with the given key"
        ) from None
    return digest
