"""SEV-SNP roots, VCEKs and signed reports made here: an ARK/ASK/ASVK line named like AMD's
Milan one under test keys, for tests of the whole path (CAS is told to trust it through the
verifier's constructor, never through configuration)."""

from __future__ import annotations

import datetime as dt
import os
import struct
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from veil.cas.verifiers import snp

__all__ = ["make_cert", "make_test_amd", "rename_issuer", "signed_report", "vcek_der"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str,
    issuer: str,
    public_key: Any,
    signer: Any,
    extensions: list[tuple[str, bytes]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    for oid, der in extensions:
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), der)
        b = b.add_extension(ext, critical=False)
    if isinstance(signer, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
        return b.sign(signer, hashes.SHA384(), rsa_padding=pss)
    return b.sign(signer, hashes.SHA384())


def rename_issuer(cert: x509.Certificate, issuer: x509.Name, key: Any) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    return b.sign(key, hashes.SHA384())


def make_test_amd() -> dict[str, Any]:
    """An ARK/ASK/ASVK line named like AMD's Milan one, under keys made here, and a VCEK."""
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ark = make_cert("ARK-Milan", "ARK-Milan", ark_key.public_key(), ark_key, [])
    ask = make_cert("SEV-Milan", "ARK-Milan", ask_key.public_key(), ark_key, [])
    asvk = make_cert("SEV-VLEK-Milan", "ARK-Milan", ask_key.public_key(), ark_key, [])
    chip = os.urandom(64)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    tcb = {"1": 3, "2": 0, "3": 20, "8": 209}
    exts = [
        (f"1.3.6.1.4.1.3704.1.3.{k}", bytes([2, 1, v]) if v < 128 else bytes([2, 2, 0, v]))
        for k, v in tcb.items()
    ]
    exts.append(("1.3.6.1.4.1.3704.1.4", b"\x04\x40" + chip))
    vcek = make_cert("SEV-VCEK", "SEV-Milan", vcek_key.public_key(), ask_key, exts)
    line = snp._Line("Milan", ark, ask, asvk)
    return {"line": line, "chip": chip, "key": vcek_key, "vcek": vcek}


def vcek_der(amd: dict[str, Any]) -> bytes:
    return bytes(amd["vcek"].public_bytes(serialization.Encoding.DER))


def signed_report(
    amd: dict[str, Any],
    report_data: bytes,
    policy: int = 0x30000,
    measurement: bytes = b"\x11" * 48,
) -> bytes:
    raw = bytearray(snp.REPORT_SIZE)
    struct.pack_into("<IIQ", raw, 0, 2, 1, policy)
    struct.pack_into("<II", raw, 0x30, 0, 1)
    raw[0x50:0x90] = report_data
    raw[0x90:0xC0] = measurement
    raw[0x180:0x188] = bytes([3, 0, 0, 0, 0, 0, 20, 209])
    raw[0x1A0:0x1E0] = amd["chip"]
    der = amd["key"].sign(bytes(raw[: snp.SIGNED_END]), ec.ECDSA(hashes.SHA384()))
    r, s = utils.decode_dss_signature(der)
    raw[0x2A0:0x2E8] = r.to_bytes(72, "little")
    raw[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(raw)
