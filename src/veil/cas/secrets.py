"""Secrets generated inside CAS, and sealing them at rest.

A secret's material is the raw bytes (ascii, binary, explicit), a private key, or a certificate
with its key and issuing chain. It is serialized to JSON and sealed with AES-256-GCM; the
additional data binds the ciphertext to `namespace/session/name`, so a sealed value copied to
another row does not open.

An `external` secret takes its randomness from CAS's PKCS#11 token (`rng`) instead of the
operating system: random text and bytes come straight from the token's generator, EC and Ed25519
keys are made from a private scalar it drew. The value is then sealed like any other — it has to
reach the program, so it cannot stay in the token.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from veil.session.model import SecretDef

__all__ = ["EXTERNAL_KINDS", "Material", "external_problem", "fingerprint", "generate"]
__all__ += ["open_sealed", "seal"]

Rng = Callable[[int], bytes]
EXTERNAL_KINDS = ("ascii", "binary", "private-key", "x509", "x509-ca")
_CURVES: dict[str, ec.EllipticCurve] = {
    "EC": ec.SECP256R1(),
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
}

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


def external_problem(d: SecretDef) -> str | None:
    """Why `d` cannot be generated from the token's randomness (None: it can)."""
    kind = d.kind or "explicit"
    if d.import_ is not None or kind not in EXTERNAL_KINDS:
        allowed = ", ".join(EXTERNAL_KINDS)
        return f"secret {d.name!r}: an external secret is generated, one of {allowed}"
    makes_key = kind not in ("ascii", "binary") and d.private_key is None
    if makes_key and (d.key_type or "EC") not in (*_CURVES, "Ed25519"):
        return f"secret {d.name!r}: external keys are EC (P-256, P-384) or Ed25519, not RSA"
    return None


def _random_text(charset: str, size: int) -> str:
    """`size` characters drawn uniformly from `charset`: bytes from the OS, those at or above
    the largest multiple of len(charset) rejected (no bias). Many times faster than one
    `secrets.choice` per character, which made large ascii secrets cost seconds."""
    n = len(charset)
    if n > 256:
        return "".join(secrets.choice(charset) for _ in range(size))
    limit = 256 - 256 % n
    out: list[str] = []
    while len(out) < size:
        need = size - len(out)
        out.extend(charset[b % n] for b in secrets.token_bytes(need + need // 2 + 8) if b < limit)
    return "".join(out[:size])


def _below(rng: Rng, n: int) -> int:
    """A uniform integer in [0, n) from the token's bytes (rejection sampling, no bias)."""
    size = (n.bit_length() + 7) // 8
    mask = (1 << n.bit_length()) - 1
    while True:
        v = int.from_bytes(rng(size), "big") & mask
        if v < n:
            return v


_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


def _token_key(d: SecretDef, rng: Rng) -> Any:
    kt = d.key_type or "EC"
    if kt == "Ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(rng(32))
    curve = _CURVES[kt]
    return ec.derive_private_key(1 + _below(rng, _ORDERS[curve.name] - 1), curve)


def _new_key(d: SecretDef, rng: Rng | None = None) -> Any:
    if rng is not None and d.external:
        return _token_key(d, rng)
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


def generate(d: SecretDef, resolved: dict[str, Material], rng: Rng | None = None) -> Material:
    """Make the material of one secret; `resolved` holds the secrets it depends on. `rng` is
    the token's generator, used for an `external` secret (the caller checked it is set)."""
    kind = d.kind or "explicit"
    token = rng if d.external else None
    if kind == "explicit":
        return Material(kind, raw=(d.value or "").encode())
    if kind == "ascii":
        charset = d.charset or DEFAULT_CHARSET
        size = d.size or DEFAULT_ASCII_SIZE
        if token is not None:
            text = "".join(charset[_below(token, len(charset))] for _ in range(size))
        else:
            text = _random_text(charset, size)
        return Material(kind, raw=text.encode())
    if kind == "binary":
        size = d.size or DEFAULT_BINARY_SIZE
        return Material(kind, raw=token(size) if token else secrets.token_bytes(size))
    if kind == "private-key":
        return Material(kind, key_pem=_pem(_new_key(d, token)))
    # x509 and x509-ca
    if d.private_key is not None:
        key_pem = resolved[d.private_key].key_pem
        key: Any = serialization.load_pem_private_key(key_pem, password=None)
    else:
        key = _new_key(d, token)
        key_pem = _pem(key)
    issuer = resolved[d.issuer] if d.issuer is not None else None
    cert_pem, chain = _certificate(d, key, issuer, is_ca=kind == "x509-ca")
    return Material(kind, key_pem=key_pem, cert_pem=cert_pem, chain=chain)
