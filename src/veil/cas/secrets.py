"""Secrets generated inside CAS, and sealing them at rest.

A secret's material is the raw bytes (ascii, binary, explicit), a private key, or a certificate
with its key and issuing chain. It is serialized to JSON and sealed with AES-256-GCM; the
additional data binds the ciphertext to `namespace/session/name`, so a sealed value copied to
another row does not open.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from veil.policy.session import SecretDef

__all__ = ["Material", "fingerprint", "generate", "open_sealed", "seal"]

DEFAULT_ASCII_SIZE = 20
DEFAULT_BINARY_SIZE = 32
DEFAULT_CHARSET = string.ascii_letters + string.digits
DEFAULT_VALID_DAYS = 365


@dataclass
class Material:
    kind: str
    raw: bytes = b""
    key_pem: bytes = b""
    cert_pem: bytes = b""
    chain: list[bytes] = field(default_factory=list)  # issuer certificates, nearest first

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind,
                "raw": base64.b64encode(self.raw).decode(),
                "key": self.key_pem.decode(),
                "cert": self.cert_pem.decode(),
                "chain": [c.decode() for c in self.chain],
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> Material:
        d = json.loads(blob)
        return cls(
            kind=d["kind"],
            raw=base64.b64decode(d["raw"]),
            key_pem=d["key"].encode(),
            cert_pem=d["cert"].encode(),
            chain=[c.encode() for c in d["chain"]],
        )


def seal(key: bytes, aad: str, material: Material) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, material.to_json(), aad.encode())


def open_sealed(key: bytes, aad: str, blob: bytes) -> Material:
    """Raises cryptography's InvalidTag if the blob or its place was tampered with."""
    return Material.from_json(AESGCM(key).decrypt(blob[:12], blob[12:], aad.encode()))


def fingerprint(fp_key: bytes, definition: SecretDef, dependencies: list[str]) -> str:
    """Identifies a definition: same fingerprint → keep the value. Keyed, as it covers an
    explicit value; dependencies (issuer, private key) are the fingerprints of what it uses."""
    data = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("export", None)  # who may import a value does not change the value
    blob = json.dumps([data, dependencies], sort_keys=True).encode()
    return hmac.new(fp_key, blob, hashlib.sha256).hexdigest()


def _new_key(d: SecretDef) -> Any:
    kt = d.key_type or "EC"
    if kt in ("EC", "P-256"):
        return ec.generate_private_key(ec.SECP256R1())
    if kt == "P-384":
        return ec.generate_private_key(ec.SECP384R1())
    if kt == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=d.key_size or 3072)


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _sign_hash(key: Any) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _certificate(
    d: SecretDef, key: Any, issuer: Material | None, is_ca: bool
) -> tuple[bytes, list[bytes]]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, d.common_name or d.name)])
    if issuer is not None:
        issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem)
        signing_key: Any = serialization.load_pem_private_key(issuer.key_pem, password=None)
        issuer_name = issuer_cert.subject
        chain = [issuer.cert_pem, *issuer.chain]
    else:
        signing_key, issuer_name, chain = key, subject, []
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=d.valid_for or DEFAULT_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if d.dns:
        sans: list[x509.GeneralName] = []
        for name in d.dns:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signing_key, _sign_hash(signing_key))
    return cert.public_bytes(serialization.Encoding.PEM), chain


def generate(d: SecretDef, resolved: dict[str, Material]) -> Material:
    """Make the material of one secret; `resolved` holds the secrets it depends on."""
    kind = d.kind or "explicit"
    if kind == "explicit":
        return Material(kind, raw=(d.value or "").encode())
    if kind == "ascii":
        charset = d.charset or DEFAULT_CHARSET
        size = d.size or DEFAULT_ASCII_SIZE
        return Material(kind, raw="".join(secrets.choice(charset) for _ in range(size)).encode())
    if kind == "binary":
        return Material(kind, raw=secrets.token_bytes(d.size or DEFAULT_BINARY_SIZE))
    if kind == "private-key":
        return Material(kind, key_pem=_pem(_new_key(d)))
    # x509 and x509-ca
    if d.private_key is not None:
        key_pem = resolved[d.private_key].key_pem
        key: Any = serialization.load_pem_private_key(key_pem, password=None)
    else:
        key = _new_key(d)
        key_pem = _pem(key)
    issuer = resolved[d.issuer] if d.issuer is not None else None
    cert_pem, chain = _certificate(d, key, issuer, is_ca=kind == "x509-ca")
    return Material(kind, key_pem=key_pem, cert_pem=cert_pem, chain=chain)
