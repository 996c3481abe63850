"""Keys and certificates of CAS and its clients.

CAS has an EC P-256 TLS key whose certificate it signs itself; clients pin the public key
(standard base64 of the DER SubjectPublicKeyInfo). Python's `ssl` cannot accept an arbitrary
self-signed client certificate, so CAS also runs a client CA that signs the CSRs clients send
on first contact. A client's identity is the hex SHA-256 of its SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "identity_of_cert",
    "identity_of_key",
    "issue_client_cert",
    "key_pem",
    "make_ca",
    "make_csr",
    "new_ec_key",
    "self_signed_server_cert",
    "spki_b64",
    "spki_der",
]

PrivateKey = ec.EllipticCurvePrivateKey


def new_ec_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_b64(public_key: ec.EllipticCurvePublicKey) -> str:
    """The form a mesh names as `cas_key` and the launcher pins."""
    return base64.b64encode(spki_der(public_key)).decode("ascii")


def identity_of_key(public_key: object) -> str:
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def identity_of_cert(der: bytes) -> str:
    return identity_of_key(x509.load_der_x509_certificate(der).public_key())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def self_signed_server_cert(key: PrivateKey, hosts: list[str], days: int = 3650) -> bytes:
    """CAS's certificate, signed by its own key; clients trust the key, not a CA."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "veil-cas")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(key: PrivateKey, common_name: str, days: int = 3650) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def make_csr(key: PrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "veil-client")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def issue_client_cert(
    csr_pem: bytes, ca_key: PrivateKey, ca_cert_pem: bytes, days: int = 365
) -> tuple[bytes, str]:
    """Sign a client's CSR; returns (certificate PEM, identity). Raises ValueError if bad."""
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    identity = identity_of_key(csr.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity[:32])]))
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), identity
