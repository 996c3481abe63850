"""Secret generation, sealing, fingerprints and reference formats (pure, no server)."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from veil.cas.secrets import Material, fingerprint, generate, open_sealed, seal
from veil.cas.substitute import UnknownReference, render, substitute
from veil.session.model import SecretDef

KEY = b"k" * 32


def test_ascii_respects_size_and_charset() -> None:
    m = generate(SecretDef(name="a", kind="ascii", size=50, charset="xy"), {})
    assert len(m.raw) == 50 and set(m.raw.decode()) <= {"x", "y"}
    assert generate(SecretDef(name="a", kind="ascii"), {}).raw != m.raw


@pytest.mark.parametrize("kt", ["EC", "P-384", "Ed25519"])
def test_private_keys(kt: str) -> None:
    m = generate(SecretDef(name="k", kind="private-key", key_type=kt), {})  # type: ignore[arg-type]
    assert b"BEGIN PRIVATE KEY" in m.key_pem
    assert "PUBLIC KEY" in render(m, "publickey")


def test_rsa_key() -> None:
    m = generate(SecretDef(name="k", kind="private-key", key_type="RSA", key_size=2048), {})
    assert len(base64.b64decode(render(m, "base64"))) > 1000


def test_certificate_issued_by_ca() -> None:
    ca = generate(SecretDef(name="ca", kind="x509-ca", common_name="CA"), {})
    crt = generate(
        SecretDef(name="c", kind="x509", issuer="ca", dns=["a.example"], valid_for=10), {"ca": ca}
    )
    cert = x509.load_pem_x509_certificate(crt.cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    assert render(crt, "chain") == ca.cert_pem.decode()
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 10
    assert render(crt, "key") == crt.key_pem.decode()


def test_seal_binds_place() -> None:
    m = Material("ascii", raw=b"value")
    blob = seal(KEY, "ns/s/a", m)
    assert b"value" not in blob
    assert open_sealed(KEY, "ns/s/a", blob).raw == b"value"
    with pytest.raises(InvalidTag):
        open_sealed(KEY, "ns/s/b", blob)
    with pytest.raises(InvalidTag):
        open_sealed(b"x" * 32, "ns/s/a", blob)


def test_fingerprint_follows_definition_not_export() -> None:
    d = SecretDef(name="a", kind="ascii", size=5)
    same = SecretDef(name="a", kind="ascii", size=5, export=["other"])  # type: ignore[list-item]
    assert fingerprint(KEY, d, []) == fingerprint(KEY, same, [])
    assert fingerprint(KEY, d, []) != fingerprint(KEY, SecretDef(name="a", kind="ascii"), [])
    assert fingerprint(KEY, d, []) != fingerprint(KEY, d, ["dep"])


def test_substitute_forms() -> None:
    mats = {"pw": Material("ascii", raw=b"abc"), "b": Material("binary", raw=b"\x00\xff")}
    text = "$$SCONE::pw$$-$$SCONE::pw:hex$$-$$SCONE::b$$-$$SCONE::b:hex$$-$$SCONE::pw.hex$$"
    assert substitute(text, mats) == "abc-616263-AP8=-00ff-616263"
    with pytest.raises(UnknownReference):
        substitute("$$SCONE::nope$$", mats)
    with pytest.raises(UnknownReference):
        substitute("$$SCONE::pw:chain$$", mats)


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=50))
def test_text_without_references_is_unchanged(text: str) -> None:
    assert substitute(text, {}) == text


def test_every_format_of_a_certificate() -> None:
    """Each format gives what docs/cas.md says, not another part of the secret: the public
    key is the certificate's key's, the DER forms are the certificate's."""
    ca = generate(SecretDef(name="ca", kind="x509-ca", common_name="CA"), {})
    crt = generate(SecretDef(name="c", kind="x509", issuer="ca", dns=["a.example"]), {"ca": ca})
    cert = x509.load_pem_x509_certificate(crt.cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    for fmt in (None, "crt", "cert", "pem"):
        assert render(crt, fmt) == crt.cert_pem.decode()
    assert render(crt, "privatekey") == crt.key_pem.decode()
    assert render(crt, "publickey") == spki
    assert render(crt, "der") == render(crt, "base64") == base64.b64encode(der).decode()
    assert render(crt, "hex") == der.hex()
    assert render(ca, "chain") == ca.cert_pem.decode()  # self-signed: itself
    with pytest.raises(UnknownReference, match="format 'raw' does not apply to a x509 secret"):
        render(crt, "raw")


def test_text_around_references_is_kept() -> None:
    mats = {"pw": Material("ascii", raw=b"abc")}
    assert substitute("pw=$$SCONE::pw$$;", mats) == "pw=abc;"
    assert substitute("x$$SCONE::pw$$y$$SCONE::pw$$z", mats) == "xabcyabcz"
