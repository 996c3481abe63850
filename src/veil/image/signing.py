"""Signing image digests in cosign's format, and checking such signatures.

A signature is what cosign writes, so that the tools users already run verify it (cosign,
podman/skopeo with a `sigstoreSigned` policy): an OCI artifact tagged `sha256-<hex>.sig` in the
image's repository, whose layer is the simple-signing payload

    {"critical": {"identity": {"docker-reference": REPOSITORY},
                  "image": {"docker-manifest-digest": DIGEST},
                  "type": "cosign container image signature"}, "optional": null}

(media type `application/vnd.dev.cosign.simplesigning.v1+json`) with the base64 signature in the
annotation `dev.cosignproject.cosign/signature`. Keys: a cosign key file (`cosign.key`,
encrypted; its password from `COSIGN_PASSWORD`), or a PEM private key; by default an ECDSA P-256
key made on first use in `$VEIL_CONFIG_DIR/signing/` (0600). A changed image has another digest
and so no signature; a signature made with another key, or copied to another repository, does
not verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_bytes
from veil.image.reference import Reference, parse_reference
from veil.image.registry import OCI_MANIFEST, NotFound, Registry
from veil.paths import config_dir

__all__ = [
    "PAYLOAD_TYPE",
    "SIG_ANNOTATION",
    "encrypt_cosign_key",
    "load_public_key",
    "sign_image",
    "signature_tag",
    "signing_key",
    "verify_image",
]

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
_ENCRYPTED = (b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _key_paths() -> tuple[Path, Path]:
    d = config_dir() / "signing"
    return d / "cosign.key", d / "cosign.pub"


def _pem_body(data: bytes, label: bytes) -> bytes:
    start = data.index(b"-----BEGIN " + label + b"-----") + len(label) + 16
    end = data.index(b"-----END " + label + b"-----")
    return base64.b64decode(b"".join(data[start:end].split()))


def _decrypt_cosign(path: Path, data: bytes) -> bytes:
    """The PKCS#8 DER inside a cosign key file (scrypt + NaCl secretbox, as cosign writes)."""
    import nacl.exceptions
    import nacl.secret

    label = next(lb for lb in _ENCRYPTED if lb in data)
    doc = json.loads(_pem_body(data, label))
    password = os.environ.get("COSIGN_PASSWORD")
    if password is None:
        raise UserError(f"{path} is an encrypted cosign key",
                        hint="set COSIGN_PASSWORD to its password (empty for none)")
    kdf = doc["kdf"]["params"]
    key = hashlib.scrypt(password.encode(), salt=base64.b64decode(doc["kdf"]["salt"]),
                         n=kdf["N"], r=kdf["r"], p=kdf["p"], dklen=32, maxmem=256 << 20)
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(
            base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"])))
    except nacl.exceptions.CryptoError:
        raise UserError(f"{path}: wrong COSIGN_PASSWORD for this cosign key") from None


def encrypt_cosign_key(key: PrivateKey, password: str) -> bytes:
    """A cosign key file (`ENCRYPTED SIGSTORE PRIVATE KEY`) holding `key`."""
    import nacl.secret
    import nacl.utils

    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt = os.urandom(32)
    params = {"N": 32768, "r": 8, "p": 1}
    secret = hashlib.scrypt(password.encode(), salt=salt, n=params["N"], r=params["r"],
                            p=params["p"], dklen=32, maxmem=256 << 20)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": params,
                   "salt": base64.b64encode(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
           "ciphertext": base64.b64encode(box).decode()}
    body = base64.encodebytes(json.dumps(doc).encode()).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n").encode()


def _private_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the signing key {path}: {err.strerror}") from None
    try:
        if any(lb in data for lb in _ENCRYPTED):
            key: Any = serialization.load_der_private_key(_decrypt_cosign(path, data), None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a cosign key or a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | rsa.RSAPrivateKey):
        raise UserError(f"{path}: an ECDSA, Ed25519 or RSA key is needed")
    return key


def signing_key(path: Path | None = None) -> PrivateKey:
    """The key at `path`, else the user's default key (ECDSA P-256, made on first use)."""
    if path is not None:
        if not path.exists():
            raise UserError(f"signing key {path} does not exist")
        return _private_key(path)
    priv_path, pub_path = _key_paths()
    if priv_path.exists():
        return _private_key(priv_path)
    key = ec.generate_private_key(ec.SECP256R1())
    atomic_write_bytes(priv_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=0o600)
    atomic_write_bytes(pub_path, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def load_public_key(path: Path | None = None) -> PublicKey:
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
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | rsa.RSAPublicKey):
        raise UserError(f"{path}: an ECDSA, Ed25519 or RSA public key is needed")
    return key


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def payload(ref: Reference, digest: str) -> bytes:
    """cosign's simple-signing payload for `digest` in the repository of `ref`."""
    doc = {"critical": {"identity": {"docker-reference": ref.name},
                        "image": {"docker-manifest-digest": digest},
                        "type": SIGNATURE_TYPE},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def _verify(key: PublicKey, sig: bytes, data: bytes) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(sig, data)


def sign_image(image: str, digest: str, key_path: Path | None = None) -> str:
    """Sign `digest` of `image` and push the signature; returns the signature's reference."""
    ref = parse_reference(image)
    key = signing_key(key_path)
    body = payload(ref, digest)
    sig = base64.b64encode(_sign(key, body)).decode()
    tag = signature_tag(digest)
    with Registry(ref) as reg:
        config = json.dumps({"architecture": "", "os": "", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [
                                 "sha256:" + hashlib.sha256(body).hexdigest()]}},
                            separators=(",", ":")).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": reg.put_blob(config),
                       "size": len(config)},
            "layers": [{"mediaType": PAYLOAD_TYPE, "digest": reg.put_blob(body),
                        "size": len(body), "annotations": {SIG_ANNOTATION: sig}}],
        }
        reg.put_manifest(tag, manifest, OCI_MANIFEST)
    return f"{ref.name}:{tag}"


def verify_image(image: str, key: PublicKey) -> str:
    """Check the signature of `image` against `key`; returns the verified digest. The signed
    payload must name this digest AND this repository (a signature copied from elsewhere
    does not count)."""
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
        blobs = [(x, reg.blob(x["digest"])) for x in layers]
    problems: list[str] = []
    for layer, body in blobs:
        try:
            doc = json.loads(body)
            signed = doc["critical"]["image"]["docker-manifest-digest"]
            repository = doc["critical"]["identity"]["docker-reference"]
            sig = base64.b64decode(layer["annotations"][SIG_ANNOTATION], validate=True)
        except (ValueError, KeyError, TypeError):
            problems.append("a malformed signature")
            continue
        try:
            _verify(key, sig, body)
        except (InvalidSignature, TypeError, ValueError):
            problems.append("a signature not made with the given key")
            continue
        if signed != digest:
            problems.append(f"a signature of {signed}, not {digest}")
        elif repository != ref.name:
            problems.append(f"a signature for the repository {repository}, not {ref.name}")
        else:
            return digest
    raise UserError(f"the signature of {ref.name}@{digest} was not made with the given key "
                    f"for this image: found {', '.join(problems)}")
