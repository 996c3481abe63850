"""The `tdx` and `sgx-dcap` verifiers: Intel ECDSA quotes (SGX v3, TDX v4 and v5).

Evidence (`report`): base64 of the quote as the quoting enclave returns it, with its
certification data (the PCK certificate chain). CAS checks, without any network access:
- the quote's ECDSA P-256 signature over header and body, with the attestation key in the quote;
- the QE report's signature with the PCK certificate's key, and that the QE report binds the
  attestation key (its report_data starts with SHA-256(attestation key || QE auth data));
- the PCK chain: PCK certificate, Intel's PCK Platform or Processor CA, Intel's SGX Root CA,
  whose public key must equal the one pinned in `intel/sgx_root_ca.pem`;
- the QE report comes from Intel's quoting enclave (MRSIGNER and ISVPRODID pinned below);
- report_data holds SHA-512(nonce || Veil measurement) (see `expected_report_data`).
Not checked (needs Intel's PCS collateral, fetched and cached separately): the TCB level of
the platform against Intel's signed TCB info, the QE's TCB level, and revocation (CRLs). The
claims record the SVNs so a session can require minimum values.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import struct
from dataclasses import dataclass
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from veil.cas.verifiers import Claims, Evidence, Refused, expected_report_data

__all__ = [
    "Quote",
    "SgxDcapVerifier",
    "TdxVerifier",
    "check_qe_identity",
    "intel_root_spki",
    "parse_quote",
    "verify_quote",
]

HEADER = 48
TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
ATT_KEY_ECDSA_P256 = 2
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
SGX_BODY = 384
TD10_BODY = 584
TD15_BODY = 648
# body types of a v5 quote
_V5_BODIES = {1: SGX_BODY, 2: TD10_BODY, 3: TD15_BODY}

# Intel's quoting enclaves (MRSIGNER, ISVPRODID), as in Intel's published QE identities
_QE_IDENTITY = {
    TEE_SGX: (bytes.fromhex("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"), 1),
    TEE_TDX: (bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"), 2),
}

# TD report body offsets (Intel TDX DCAP quote layout)
_TD_FIELDS = {
    "tcb_svn": (0, 16),
    "mr_seam": (16, 48),
    "mrsigner_seam": (64, 48),
    "seam_attributes": (112, 8),
    "td_attributes": (120, 8),
    "xfam": (128, 8),
    "mr_td": (136, 48),
    "mr_config_id": (184, 48),
    "mr_owner": (232, 48),
    "mr_owner_config": (280, 48),
    "rtmr_0": (328, 48),
    "rtmr_1": (376, 48),
    "rtmr_2": (424, 48),
    "rtmr_3": (472, 48),
    "report_data": (520, 64),
}
# SGX report body offsets
_SGX_FIELDS = {
    "cpu_svn": (0, 16),
    "attributes": (48, 16),
    "mr_enclave": (64, 32),
    "mr_signer": (128, 32),
    "isv_prod_id": (256, 2),
    "isv_svn": (258, 2),
    "report_data": (320, 64),
}


@dataclass(frozen=True)
class Quote:
    version: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    header: bytes
    body: bytes
    signed: bytes  # what the attestation key signs: header and body (v5: with its type, size)
    signature: bytes  # r || s, big-endian
    attestation_key: bytes  # x || y
    qe_report: bytes
    qe_signature: bytes
    qe_auth: bytes
    pck_chain: list[x509.Certificate]

    def field(self, name: str) -> bytes:
        table = _TD_FIELDS if self.tee_type == TEE_TDX else _SGX_FIELDS
        off, size = table[name]
        return self.body[off : off + size]

    @property
    def report_data(self) -> bytes:
        return self.field("report_data")

    @property
    def qe_isv_svn(self) -> int:
        """The quoting enclave's security version."""
        return int.from_bytes(self.qe_report[258:260], "little")

    @property
    def debug(self) -> bool:
        if self.tee_type == TEE_TDX:
            return bool(self.field("td_attributes")[0] & 0x01)  # TUD.DEBUG
        return bool(self.field("attributes")[0] & 0x02)  # SGX ATTRIBUTES.DEBUG


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Refused("the quote is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])


def parse_quote(raw: bytes) -> Quote:
    r = _Reader(raw)
    header = r.take(HEADER)
    version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", header)
    if key_type != ATT_KEY_ECDSA_P256:
        raise Refused(f"attestation key type {key_type} is not ECDSA P-256")
    if version == 3:
        body_size = SGX_BODY
    elif version == 4:
        body_size = TD10_BODY if tee_type == TEE_TDX else SGX_BODY
    elif version == 5:
        body_type, body_size = r.u16(), r.u32()
        if _V5_BODIES.get(body_type) != body_size:
            raise Refused(f"quote body type {body_type} with {body_size} bytes is unknown")
    else:
        raise Refused(f"quote version {version} is not supported (3, 4 or 5)")
    if tee_type not in (TEE_SGX, TEE_TDX):
        raise Refused(f"TEE type {tee_type:#x} is neither SGX nor TDX")
    body = r.take(body_size)
    signed = raw[: r.pos]
    sig = _Reader(r.take(r.u32()))
    signature, att_key = sig.take(64), sig.take(64)
    if version >= 4:
        # v4/v5 wrap the QE report in certification data of type 6
        if sig.u16() != CERT_QE_REPORT:
            raise Refused("the quote's certification data is not a QE report")
        sig = _Reader(sig.take(sig.u32()))
    qe_report, qe_sig = sig.take(SGX_BODY), sig.take(64)
    qe_auth = sig.take(sig.u16())
    cert_type, cert_size = sig.u16(), sig.u32()
    if cert_type != CERT_PCK_CHAIN:
        raise Refused(
            f"the quote carries certification data of type {cert_type}, not the PCK "
            "certificate chain (type 5); configure the quote provider to include it"
        )
    try:
        chain = x509.load_pem_x509_certificates(sig.take(cert_size).rstrip(b"\0"))
    except ValueError:
        raise Refused("the quote's PCK certificate chain is not PEM") from None
    return Quote(
        version,
        tee_type,
        qe_svn,
        pce_svn,
        header,
        body,
        signed,
        signature,
        att_key,
        qe_report,
        qe_sig,
        qe_auth,
        chain,
    )


@functools.cache
def intel_root_spki() -> bytes:
    pem = (resources.files("veil.cas.verifiers") / "intel" / "sgx_root_ca.pem").read_bytes()
    return _spki(x509.load_pem_x509_certificate(pem))


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _p256(xy: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(xy[:32], "big"), int.from_bytes(xy[32:], "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise Refused("the quote's attestation key is not a P-256 point") from None


def _verify_p256(key: ec.EllipticCurvePublicKey, rs: bytes, data: bytes, what: str) -> None:
    sig = utils.encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    try:
        key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(f"{what} does not verify") from None


def verify_pck_chain(chain: list[x509.Certificate], at: dt.datetime | None = None) -> None:
    """PCK certificate ← Intel PCK CA ← Intel SGX Root CA (pinned key), each valid at `at`."""
    when = at or dt.datetime.now(dt.UTC)
    if len(chain) < 3:
        raise Refused("the PCK certificate chain needs the PCK, its CA and Intel's root")
    root = chain[-1]
    if not hmac.compare_digest(_spki(root), intel_root_spki()):
        raise Refused("the PCK chain does not end in Intel's SGX Root CA")
    for cert, issuer in zip(chain, [*chain[1:], root], strict=True):
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):
            raise Refused(
                f"PCK chain: {cert.subject.rfc4514_string()} is not signed by its issuer"
            ) from None
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise Refused(f"PCK chain: {cert.subject.rfc4514_string()} is not valid now")


def check_qe_identity(q: Quote) -> None:
    """The QE report comes from Intel's quoting enclave for this TEE, not in debug mode."""
    signer, product = _QE_IDENTITY[q.tee_type]
    report = q.qe_report
    if not hmac.compare_digest(report[128:160], signer) or (
        int.from_bytes(report[256:258], "little") != product
    ):
        raise Refused("the quote was not made by Intel's quoting enclave")
    if report[48] & 0x02:
        raise Refused("the quoting enclave runs in debug mode")


def verify_quote(q: Quote, at: dt.datetime | None = None) -> None:
    """Signatures and chain; raises Refused with the first thing that does not hold."""
    _verify_p256(_p256(q.attestation_key), q.signature, q.signed, "the quote's signature")
    verify_pck_chain(q.pck_chain, at)
    pck_key = q.pck_chain[0].public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey):
        raise Refused("the PCK certificate's key is not ECDSA")
    _verify_p256(pck_key, q.qe_signature, q.qe_report, "the QE report's signature")
    check_qe_identity(q)
    bound = hashlib.sha256(q.attestation_key + q.qe_auth).digest()
    qe_data = q.qe_report[320:384]
    if not (hmac.compare_digest(qe_data[:32], bound) and qe_data[32:] == bytes(32)):
        raise Refused("the QE report does not vouch for the quote's attestation key")


def _decode(evidence: Evidence) -> Quote:
    try:
        raw = base64.b64decode(evidence.report, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise Refused(f"{evidence.platform} evidence is base64 of the quote") from None
    return parse_quote(raw)


def _bound(q: Quote, evidence: Evidence) -> None:
    if not hmac.compare_digest(
        q.report_data, expected_report_data(evidence.nonce, evidence.measurement)
    ):
        raise Refused("the quote's report_data does not bind this nonce and measurement")


class TdxVerifier:
    platform = "tdx"

    def verify(self, evidence: Evidence) -> Claims:
        q = _decode(evidence)
        if q.tee_type != TEE_TDX:
            raise Refused("this is an SGX quote; use platform sgx-dcap")
        verify_quote(q)
        _bound(q, evidence)
        svn = q.field("tcb_svn")
        return Claims(
            self.platform,
            evidence.measurement,
            hardware=True,
            launch=q.field("mr_td").hex(),
            debug=q.debug,
            tcb={"module_minor": svn[0], "module_major": svn[1], "qe": q.qe_isv_svn},
        )


class SgxDcapVerifier:
    platform = "sgx-dcap"

    def verify(self, evidence: Evidence) -> Claims:
        q = _decode(evidence)
        if q.tee_type != TEE_SGX:
            raise Refused("this is a TDX quote; use platform tdx")
        verify_quote(q)
        _bound(q, evidence)
        isv_svn = int.from_bytes(q.field("isv_svn"), "little")
        return Claims(
            self.platform,
            evidence.measurement,
            hardware=True,
            launch=q.field("mr_enclave").hex(),
            debug=q.debug,
            tcb={"isv": isv_svn, "qe": q.qe_isv_svn},
        )
