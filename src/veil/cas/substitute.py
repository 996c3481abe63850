"""Filling `$$SCONE::name[:format]$$` references with secret material, at provisioning only.

Formats, by what a secret holds:
    value secrets (ascii, binary, explicit): default = the value (binary: base64), hex, base64
    private keys: default/key/privatekey/pem = PKCS#8 PEM, publickey = SPKI PEM, der/hex/base64
        of the PKCS#8 DER
    certificates (x509, x509-ca): default/crt/cert/pem = the certificate PEM, key/privatekey =
        its key, chain = the issuing certificates (nearest first; a self-signed one: itself),
        der/hex/base64 of the certificate DER, publickey
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veil.cas.secrets import Material
from veil.manifest.refs import find_secret_refs

__all__ = ["UnknownReference", "render", "substitute"]


class UnknownReference(ValueError):
    """A reference that names no available secret or a format the secret cannot give."""


def _key_der(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def render(m: Material, fmt: str | None) -> str:
    """One secret in one format, as text."""
    if m.kind in ("ascii", "binary", "explicit"):
        if fmt in (None, "raw", "pem"):
            return base64.b64encode(m.raw).decode() if m.kind == "binary" else m.raw.decode()
        blob = m.raw
    elif m.kind == "private-key":
        if fmt in (None, "key", "privatekey", "pem"):
            return m.key_pem.decode()
        if fmt == "publickey":
            return _public_pem(m.key_pem).decode()
        blob = _key_der(m.key_pem)
    else:
        if fmt in (None, "crt", "cert", "pem"):
            return m.cert_pem.decode()
        if fmt in ("key", "privatekey"):
            return m.key_pem.decode()
        if fmt == "chain":
            return b"".join(m.chain or [m.cert_pem]).decode()
        if fmt == "publickey":
            return _public_pem(m.key_pem).decode()
        blob = x509.load_pem_x509_certificate(m.cert_pem).public_bytes(serialization.Encoding.DER)
    if fmt == "hex":
        return blob.hex()
    if fmt in ("base64", "der"):
        return base64.b64encode(blob).decode()
    raise UnknownReference(f"format {fmt!r} does not apply to a {m.kind} secret")


def substitute(text: str, materials: Mapping[str, Material]) -> str:
    """`text` with every reference replaced; UnknownReference names the first bad one."""
    refs = find_secret_refs(text)
    if not refs:
        return text
    out: list[str] = []
    pos = 0
    for ref in refs:
        m = materials.get(ref.name)
        if m is None:
            raise UnknownReference(f"{ref.text} names no secret available to this session")
        out.append(text[pos : ref.start])
        out.append(render(m, ref.format))
        pos = ref.end
    out.append(text[pos:])
    return "".join(out)
