"""Just enough DER to find the SubjectPublicKeyInfo in an X.509 certificate.

The launcher pins the CAS public key instead of trusting a CA; the standard library gives it the
peer certificate only as DER bytes, so it walks the structure itself:
Certificate = SEQUENCE { tbsCertificate = SEQUENCE { [0] version?, serialNumber, signature,
issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }.
"""

from __future__ import annotations

__all__ = ["DerError", "spki_from_certificate"]


class DerError(ValueError):
    """The bytes are not the DER certificate they claim to be."""


def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at `pos`."""
    if pos + 2 > len(data):
        raise DerError("truncated element")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise DerError("element runs past the end")
    return tag, pos, end


def spki_from_certificate(cert: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo (tag, length and value) of a DER certificate."""
    tag, start, _ = _read_tlv(cert, 0)
    if tag != 0x30:
        raise DerError("certificate is not a SEQUENCE")
    tag, pos, tbs_end = _read_tlv(cert, start)
    if tag != 0x30:
        raise DerError("tbsCertificate is not a SEQUENCE")
    tag, _, end = _read_tlv(cert, pos)
    if tag == 0xA0:  # explicit [0] version
        pos = end
    # serialNumber, signature, issuer, validity, subject
    for _ in range(5):
        _, _, pos = _read_tlv(cert, pos)
    tag, _, end = _read_tlv(cert, pos)
    if tag != 0x30 or end > tbs_end:
        raise DerError("subjectPublicKeyInfo not found")
    return cert[pos:end]
