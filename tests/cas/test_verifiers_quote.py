"""The tdx and sgx-dcap verifiers against real Intel quotes (tests/cas/data/attestation)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from veil.cas.verifiers import Claims, Evidence, Refused, judge, verifier_for
from veil.cas.verifiers import quote as q
from veil.session.model import SessionDoc

DATA = Path(__file__).parent / "data" / "attestation"
QUOTES = ["tdx/tdx_quote_4.dat", "tdx/tdx_quote_5.dat", "tdx/tdx_quote_6.dat"]
SGX = "sgx/occlum_quote.dat"


def _raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_tdx_v4_fields_match_the_expected_claims() -> None:
    expected = json.loads((DATA / "tdx" / "parse_tdx_claims_expected.json").read_text())["quote"]
    quote = q.parse_quote(_raw(QUOTES[0]))
    for name, value in expected["body"].items():
        assert quote.field(name).hex() == value, name
    h = expected["header"]
    assert struct.pack("<H", quote.version).hex() == h["version"]
    assert quote.header[2:4].hex() == h["att_key_type"]
    assert quote.header[4:8].hex() == h["tee_type"]
    assert quote.header[8:12].hex() == h["reserved"]
    assert quote.header[12:28].hex() == h["vendor_id"]
    assert quote.header[28:48].hex() == h["user_data"]
    assert quote.debug  # td_attributes 01...: a debug TD, as the expected claims say


def test_tdx_v5_with_td15_body() -> None:
    quote = q.parse_quote(_raw(QUOTES[1]))
    assert quote.version == 5 and len(quote.body) == q.TD15_BODY and not quote.debug
    assert quote.field("mr_td").hex().startswith("dfba221b48a22af8")


@pytest.mark.parametrize("name", [*QUOTES, SGX])
def test_real_quotes_verify(name: str) -> None:
    quote = q.parse_quote(_raw(name))
    q.verify_quote(quote)
    assert [
        c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in quote.pck_chain
    ][::2] == ["Intel SGX PCK Certificate", "Intel SGX Root CA"]


def test_sgx_quote_fields() -> None:
    quote = q.parse_quote(_raw(SGX))
    assert quote.version == 3 and quote.tee_type == q.TEE_SGX
    assert quote.field("mr_enclave").hex().startswith("8f173e4613ff05c5")
    assert quote.debug  # an Occlum debug enclave


def _flip(raw: bytes, offset: int) -> bytes:
    b = bytearray(raw)
    b[offset] ^= 0x01
    return bytes(b)


def test_tampering_is_detected() -> None:
    raw = _raw(QUOTES[0])
    with pytest.raises(Refused, match="quote's signature does not verify"):
        q.verify_quote(q.parse_quote(_flip(raw, q.HEADER + 136)))  # a bit of MRTD
    # the QE report follows: length (4), signature (64), key (64), type (2), size (4)
    qe = q.HEADER + q.TD10_BODY + 4 + 128 + 6
    with pytest.raises(Refused, match="QE report's signature does not verify"):
        q.verify_quote(q.parse_quote(_flip(raw, qe + 10)))
    with pytest.raises(Refused, match="truncated"):
        q.parse_quote(raw[:1000])


def test_chain_must_end_in_the_pinned_intel_root() -> None:
    quote = q.parse_quote(_raw(QUOTES[0]))
    key = ec.generate_private_key(ec.SECP256R1())
    name = quote.pck_chain[-1].subject
    now = dt.datetime.now(dt.UTC)
    fake_root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(Refused, match="does not end in Intel's SGX Root CA"):
        q.verify_pck_chain([*quote.pck_chain[:-1], fake_root])
    with pytest.raises(Refused, match="needs the PCK"):
        q.verify_pck_chain(quote.pck_chain[:1])
    # the PCK certificate's issuer swapped for the root: signature check fails
    with pytest.raises(Refused, match="is not signed by its issuer"):
        q.verify_pck_chain([quote.pck_chain[0], quote.pck_chain[2], quote.pck_chain[2]])
    late = quote.pck_chain[0].not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(Refused, match="is not valid now"):
        q.verify_pck_chain(quote.pck_chain, late)
    pinned = x509.load_der_x509_certificate(
        quote.pck_chain[-1].public_bytes(serialization.Encoding.DER)
    )
    assert q._spki(pinned) == q.intel_root_spki()


def _evidence(platform: str, raw: bytes) -> Evidence:
    nonce = base64.b64encode(os.urandom(32)).decode()
    return Evidence("ns/s/app", "ab" * 32, nonce, platform, base64.b64encode(raw).decode())


def test_verifiers_refuse_unbound_and_mismatched_quotes() -> None:
    with pytest.raises(Refused, match="does not bind this nonce"):
        verifier_for("tdx").verify(_evidence("tdx", _raw(QUOTES[0])))
    with pytest.raises(Refused, match="does not bind this nonce"):
        verifier_for("sgx-dcap").verify(_evidence("sgx-dcap", _raw(SGX)))
    with pytest.raises(Refused, match="SGX quote; use platform sgx-dcap"):
        verifier_for("tdx").verify(_evidence("tdx", _raw(SGX)))
    with pytest.raises(Refused, match="TDX quote; use platform tdx"):
        verifier_for("sgx-dcap").verify(_evidence("sgx-dcap", _raw(QUOTES[1])))
    ev = Evidence("ns/s/app", "ab" * 32, "AAAA", "tdx", "%%%")
    with pytest.raises(Refused, match="base64 of the quote"):
        verifier_for("tdx").verify(ev)


def test_debug_td_is_refused_by_a_production_session() -> None:
    quote = q.parse_quote(_raw(QUOTES[0]))
    mrtd = quote.field("mr_td").hex()
    claims = Claims(
        "tdx",
        "ab" * 32,
        hardware=True,
        launch=mrtd,
        debug=quote.debug,
        tcb={"module_minor": 3, "module_major": 0, "qe": 4},
    )
    doc = SessionDoc.model_validate(
        {
            "name": "s",
            "services": [
                {
                    "name": "app",
                    "command": "x",
                    "attestation": {
                        "measurement": ["ab" * 32],
                        "platforms": {"tdx": {"measurement": mrtd}},
                    },
                }
            ],
        }
    )
    with pytest.raises(Refused, match="tdx TEE runs with debugging enabled"):
        judge(claims, doc.security.attestation, doc.services[0])
    doc.security.attestation.tolerate.append("debug-mode")
    assert judge(claims, doc.security.attestation, doc.services[0]) == "ab" * 32


def test_qe_report_must_come_from_intels_quoting_enclave() -> None:
    tdx, sgx = q.parse_quote(_raw(QUOTES[0])), q.parse_quote(_raw(SGX))
    q.check_qe_identity(tdx)
    q.check_qe_identity(sgx)
    assert tdx.qe_isv_svn == 4 and sgx.qe_isv_svn == 8
    # an SGX QE's report in a TDX quote: another product id
    with pytest.raises(Refused, match="not made by Intel's quoting enclave"):
        q.check_qe_identity(dataclasses.replace(tdx, qe_report=sgx.qe_report))
    other_signer = bytearray(tdx.qe_report)
    other_signer[130] ^= 0x01
    with pytest.raises(Refused, match="not made by Intel's quoting enclave"):
        q.check_qe_identity(dataclasses.replace(tdx, qe_report=bytes(other_signer)))
    debug = bytearray(tdx.qe_report)
    debug[48] |= 0x02
    with pytest.raises(Refused, match="quoting enclave runs in debug mode"):
        q.check_qe_identity(dataclasses.replace(tdx, qe_report=bytes(debug)))


def _p256_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize("name", [QUOTES[0], SGX])
def test_an_attestation_key_the_qe_did_not_vouch_for_is_refused(name: str) -> None:
    """The attacker's own key in place of the quote's, the quote re-signed with it: every
    signature verifies, but Intel's quoting enclave vouched for another key."""
    quote = q.parse_quote(_raw(name))
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    forged = dataclasses.replace(
        quote,
        attestation_key=nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big"),
        signature=_p256_signature(key, quote.signed),
    )
    with pytest.raises(Refused, match="does not vouch for the quote's attestation key"):
        q.verify_quote(forged)


def test_report_body_layouts() -> None:
    """Every field at its offset in Intel's report body layouts (SGX: Enclave Report Body of
    the ECDSA quote; TDX: TD Report Body), on a body whose every byte differs from its
    neighbours — the sample quotes hold zeros where a field read one byte off would not
    show."""
    body = bytes(i % 251 for i in range(q.TD15_BODY))
    sgx = dataclasses.replace(q.parse_quote(_raw(SGX)), body=body[: q.SGX_BODY])
    for name, off, size in [("cpu_svn", 0, 16), ("attributes", 48, 16), ("mr_enclave", 64, 32),
                            ("mr_signer", 128, 32), ("isv_prod_id", 256, 2), ("isv_svn", 258, 2),
                            ("report_data", 320, 64)]:
        assert sgx.field(name) == body[off:off + size], name
    tdx = dataclasses.replace(q.parse_quote(_raw(QUOTES[0])), body=body[: q.TD10_BODY])
    for name, off in [("tcb_svn", 0), ("mr_seam", 16), ("mrsigner_seam", 64),
                      ("seam_attributes", 112), ("td_attributes", 120), ("xfam", 128),
                      ("mr_td", 136), ("mr_config_id", 184), ("mr_owner", 232),
                      ("mr_owner_config", 280), ("rtmr_0", 328), ("rtmr_1", 376),
                      ("rtmr_2", 424), ("rtmr_3", 472), ("report_data", 520)]:
        size = 16 if name == "tcb_svn" else 8 if name in (
            "seam_attributes", "td_attributes", "xfam") else 64 if name == "report_data" else 48
        assert tdx.field(name) == body[off:off + size], name


def test_the_debug_bit_alone_decides_debug() -> None:
    quote = q.parse_quote(_raw(SGX))
    for first, debug in [(0x02, True), (0x06, True), (0x04, False), (0x05, False), (0, False)]:
        attrs = bytes([first]) + bytes(15)
        body = quote.body[:48] + attrs + quote.body[64:]
        assert dataclasses.replace(quote, body=body).debug is debug, hex(first)
    tdx = q.parse_quote(_raw(QUOTES[1]))
    for first, debug in [(0x01, True), (0x03, True), (0x02, False), (0, False)]:
        body = tdx.body[:120] + bytes([first]) + tdx.body[121:]
        assert dataclasses.replace(tdx, body=body).debug is debug, hex(first)


def test_a_truncated_quote_is_refused_wherever_it_ends() -> None:
    raw = _raw(QUOTES[0])
    for end in (10, q.HEADER, q.HEADER + 100, q.HEADER + q.TD10_BODY + 3,
                q.HEADER + q.TD10_BODY + 100, len(raw) - 700, len(raw) - 1):
        with pytest.raises(Refused, match="truncated"):
            q.parse_quote(raw[:end])
    assert q.parse_quote(raw).version == 4


def test_the_pck_chain_needs_three_certificates() -> None:
    chain = q.parse_quote(_raw(QUOTES[0])).pck_chain
    with pytest.raises(Refused, match="needs the PCK, its CA and Intel's root"):
        q.verify_pck_chain([chain[0], chain[-1]])
    q.verify_pck_chain(chain)


def test_the_claims_name_the_tcb_components(monkeypatch: pytest.MonkeyPatch) -> None:
    """What judge() compares with min_tcb: the TDX module's minor and major SVN (bytes 0 and
    1 of TEE_TCB_SVN), the ISV SVN of an enclave, the QE's SVN. The sample quotes cannot bind
    a Veil nonce, so the binding is waived here (it has tests of its own above)."""
    monkeypatch.setattr(q, "_bound", lambda quote, evidence: None)
    for name, verifier in ((QUOTES[0], q.TdxVerifier()), (SGX, q.SgxDcapVerifier())):
        raw = _raw(name)
        quote = q.parse_quote(raw)
        ev = Evidence("ns/s/app", "1" * 64, "bm9uY2U=", verifier.platform,
                      base64.b64encode(raw).decode())
        claims = verifier.verify(ev)
        qe_svn = int.from_bytes(quote.qe_report[258:260], "little")
        if verifier.platform == "tdx":
            svn = quote.body[0:16]
            assert svn[0] not in (svn[1], svn[-1])  # the sample tells the bytes apart
            assert claims.tcb == {"module_minor": svn[0], "module_major": svn[1], "qe": qe_svn}
            assert claims.launch == quote.body[136:184].hex()
        else:
            assert claims.tcb == {"isv": int.from_bytes(quote.body[258:260], "little"),
                                  "qe": qe_svn}
            assert claims.launch == quote.body[64:96].hex()
        assert claims.hardware and claims.debug == quote.debug


def test_a_pck_chain_that_is_not_pem_is_refused() -> None:
    raw = _raw(QUOTES[0]).replace(b"-----BEGIN CERTIFICATE-----", b"-----BEGIN CERTIFICATX-----")
    with pytest.raises(Refused, match="PCK certificate chain is not PEM"):
        q.parse_quote(raw)


@pytest.mark.parametrize("platform", ["tdx", "sgx-dcap"])
def test_evidence_that_is_not_base64_is_refused(platform: str) -> None:
    for report in ("!!!!", "é"):
        with pytest.raises(Refused, match="evidence is base64 of the quote"):
            verifier_for(platform).verify(Evidence("ns/s/app", "1" * 64, "bm9uY2U=", platform,
                                                   report))


def test_an_attestation_key_off_the_curve_is_refused() -> None:
    quote = q.parse_quote(_raw(QUOTES[0]))
    off = dataclasses.replace(quote, attestation_key=(1).to_bytes(32, "big") * 2)
    with pytest.raises(Refused, match="attestation key is not a P-256 point"):
        q.verify_quote(off)
