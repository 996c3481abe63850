"""The `sev-snp` verifier: AMD SEV-SNP attestation reports.

Evidence (`report`): base64 of the JSON `{"report": <base64 of the 1184-byte attestation
report>, "cert": <base64 of the DER VCEK or VLEK certificate>}`. CAS checks that
- the certificate chains to AMD's ARK for its product line through the ASK (VCEK) or ASVK
  (VLEK) — ARK, ASK and ASVK are AMD's public certificates shipped in `amd/`; AMD signs them
  with RSA-PSS, which `verify_directly_issued_by` handles;
- the certificate is the one for this report: a VCEK names the chip id and the TCB it was
  issued for; a VLEK is shared by the chips of one cloud provider and names the TCB;
- the report's ECDSA P-384 signature (r, s little-endian) over bytes 0..0x29F verifies with
  the certificate's key;
- report_data holds SHA-512(nonce || Veil measurement) (see `expected_report_data`).
The claims are the launch measurement (48 bytes), the reported TCB and the debug policy bit.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hmac
import json
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.utils import CryptographyDeprecationWarning

from veil.cas.verifiers import Claims, Evidence, Refused, expected_report_data

__all__ = [
    "PRODUCTS",
    "SnpReport",
    "SnpVerifier",
    "amd_roots",
    "check_cert_matches",
    "load_cert",
    "parse_report",
    "verify_chain",
    "verify_signature",
]

REPORT_SIZE = 1184
SIGNED_END = 0x2A0
PRODUCTS = ("Milan", "Genoa", "Turin")
POLICY_DEBUG = 1 << 19
_OID = "1.3.6.1.4.1.3704.1."
OID_HWID = x509.ObjectIdentifier(_OID + "4")
# the TCB components a VCEK/VLEK names (AMD's VCEK specification, table "VCEK extensions")
OID_TCB = {
    "bootloader": x509.ObjectIdentifier(_OID + "3.1"),
    "tee": x509.ObjectIdentifier(_OID + "3.2"),
    "snp": x509.ObjectIdentifier(_OID + "3.3"),
    "microcode": x509.ObjectIdentifier(_OID + "3.8"),
    "fmc": x509.ObjectIdentifier(_OID + "3.9"),
}


@dataclass(frozen=True)
class SnpReport:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    signing_key: int  # 0: VCEK, 1: VLEK
    report_data: bytes
    measurement: bytes
    host_data: bytes
    reported_tcb: bytes
    chip_id: bytes
    r: int
    s: int

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    def tcb(self, product: str) -> dict[str, int]:
        """The reported TCB by component; Turin added an FMC byte and moved the others."""
        b = self.reported_tcb
        if product == "Turin":
            return {"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]}
        return {"bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


def parse_report(raw: bytes) -> SnpReport:
    if len(raw) != REPORT_SIZE:
        raise Refused(f"an SEV-SNP report has {REPORT_SIZE} bytes, this one {len(raw)}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0x00)
    vmpl, algo = struct.unpack_from("<II", raw, 0x30)
    (flags,) = struct.unpack_from("<I", raw, 0x48)
    if version < 2:
        raise Refused(f"SEV-SNP report version {version} is not supported (2 or later)")
    return SnpReport(
        raw=raw,
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        vmpl=vmpl,
        signature_algo=algo,
        signing_key=(flags >> 2) & 0x7,
        report_data=raw[0x50:0x90],
        measurement=raw[0x90:0xC0],
        host_data=raw[0xC0:0xE0],
        reported_tcb=raw[0x180:0x188],
        chip_id=raw[0x1A0:0x1E0],
        r=int.from_bytes(raw[0x2A0:0x2E8], "little"),
        s=int.from_bytes(raw[0x2E8:0x330], "little"),
    )


@dataclass(frozen=True)
class _Line:
    product: str
    ark: x509.Certificate
    ask: x509.Certificate  # signs VCEKs
    asvk: x509.Certificate  # signs VLEKs


@functools.cache
def amd_roots() -> dict[str, _Line]:
    """AMD's certificates per product line, each checked once: ARK self-signed, ASK and ASVK
    issued by it."""
    out: dict[str, _Line] = {}
    folder = resources.files("veil.cas.verifiers") / "amd"
    for product in PRODUCTS:
        pem = (folder / f"{product.lower()}_ask_ark_asvk.pem").read_bytes()
        by_cn = {_cn(c): c for c in x509.load_pem_x509_certificates(pem)}
        line = _Line(
            product,
            by_cn[f"ARK-{product}"],
            by_cn[f"SEV-{product}"],
            by_cn[f"SEV-VLEK-{product}"],
        )
        for cert in (line.ark, line.ask, line.asvk):
            cert.verify_directly_issued_by(line.ark)
        out[product] = line
    return out


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def verify_chain(
    cert: x509.Certificate,
    at: dt.datetime | None = None,
    roots: Mapping[str, _Line] | None = None,
) -> tuple[str, str]:
    """Check that `cert` was issued by AMD (ASK or ASVK under the ARK of its product line) and
    is valid at `at`; return (product, "VCEK" | "VLEK"). `roots` default to AMD's."""
    when = at or _now()
    for line in (amd_roots() if roots is None else roots).values():
        for kind, issuer in (("VCEK", line.ask), ("VLEK", line.asvk)):
            if cert.issuer != issuer.subject:
                continue
            try:
                cert.verify_directly_issued_by(issuer)
            except (InvalidSignature, ValueError, TypeError):
                raise Refused(
                    f"the {kind} certificate does not verify with AMD's {_cn(issuer)} key"
                ) from None
            if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
                raise Refused(
                    f"the {kind} certificate is valid from {cert.not_valid_before_utc:%Y-%m-%d} "
                    f"to {cert.not_valid_after_utc:%Y-%m-%d}, not now"
                )
            return line.product, kind
    raise Refused(f"the certificate's issuer ({cert.issuer.rfc4514_string()}) is not an AMD key")


def _ext_int(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> int | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    der = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    # a DER INTEGER: tag 2, short length, big-endian unsigned value
    if len(der) < 3 or der[0] != 2 or der[1] != len(der) - 2:
        raise Refused(f"certificate extension {oid.dotted_string} is not an integer")
    return int.from_bytes(der[2:], "big")


def check_cert_matches(report: SnpReport, cert: x509.Certificate, product: str, kind: str) -> None:
    """The certificate is the one for this chip (VCEK) and this TCB."""
    said = "VLEK" if report.signing_key == 1 else "VCEK"
    if kind != said:
        raise Refused(f"the report says a {said} signed it, the certificate is a {kind}")
    if kind == "VCEK":
        try:
            hwid = cert.extensions.get_extension_for_oid(OID_HWID).value
        except x509.ExtensionNotFound:
            raise Refused("the VCEK names no chip id") from None
        der = hwid.value if isinstance(hwid, x509.UnrecognizedExtension) else b""
        # older VCEKs hold the 64 bytes bare, newer ones as a DER OCTET STRING
        chip = der[2:] if len(der) == 66 and der[:2] == b"\x04\x40" else der
        if not hmac.compare_digest(chip, report.chip_id):
            raise Refused("the VCEK was issued for another chip than the one in the report")
    for part, value in sorted(report.tcb(product).items()):
        named = _ext_int(cert, OID_TCB[part])
        if named is not None and named != value:
            raise Refused(f"the {kind} was issued for TCB {part} {named}, the report has {value}")


def verify_signature(report: SnpReport, cert: x509.Certificate) -> None:
    if report.signature_algo != 1:
        raise Refused(f"unknown SEV-SNP signature algorithm {report.signature_algo}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise Refused("the certificate's key is not ECDSA P-384")
    try:
        key.verify(
            utils.encode_dss_signature(report.r, report.s),
            report.raw[:SIGNED_END],
            ec.ECDSA(hashes.SHA384()),
        )
    except InvalidSignature:
        raise Refused("the SEV-SNP report's signature does not verify") from None


def load_cert(der: bytes) -> x509.Certificate:
    """A VCEK/VLEK from DER. AMD issues them with serial numbers whose top bit is set, which
    DER reads as negative; cryptography warns about that on every load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


def _decode(evidence: Evidence) -> tuple[bytes, x509.Certificate]:
    try:
        doc = json.loads(base64.b64decode(evidence.report, validate=True))
        raw = base64.b64decode(doc["report"], validate=True)
        cert = load_cert(base64.b64decode(doc["cert"], validate=True))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise Refused(
            'sev-snp evidence is base64 of {"report": base64, "cert": base64 DER VCEK or VLEK}'
        ) from None
    return raw, cert


class SnpVerifier:
    platform = "sev-snp"

    def __init__(self, roots: Mapping[str, _Line] | None = None) -> None:
        """`roots`: product lines to trust instead of AMD's — for tests, which sign reports
        under roots of their own; nothing in CAS's configuration passes them."""
        self.roots = roots

    def verify(self, evidence: Evidence) -> Claims:
        raw, cert = _decode(evidence)
        report = parse_report(raw)
        product, kind = verify_chain(cert, roots=self.roots)
        check_cert_matches(report, cert, product, kind)
        verify_signature(report, cert)
        if not hmac.compare_digest(
            report.report_data, expected_report_data(evidence.nonce, evidence.measurement)
        ):
            raise Refused("the report's report_data does not bind this nonce and measurement")
        return Claims(
            self.platform,
            evidence.measurement,
            hardware=True,
            launch=report.measurement.hex(),
            debug=report.debug,
            tcb=report.tcb(product),
        )
