"""The sev-snp verifier against real AMD evidence (tests/cas/data/attestation/snp), and its full
path (nonce binding, claims, session policy) against a report made here under test roots."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cas.snp_roots import make_cert, make_test_amd, rename_issuer, signed_report
from veil.cas.verifiers import Evidence, Refused, expected_report_data, judge, snp, verifier_for
from veil.session.model import SessionDoc

DATA = Path(__file__).parent / "data" / "attestation" / "snp"
MEASUREMENT_HEX = (
    "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c"
    "23500644e0e692e6be917f9050d3d38c"
)
VEIL_M = "ab" * 32
BEFORE_VLEK_EXPIRY = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def _report(name: str = "test-report.bin") -> bytes:
    return (DATA / name).read_bytes()


def _cert(name: str) -> x509.Certificate:
    return snp.load_cert((DATA / name).read_bytes())


def _check(raw: bytes, cert: x509.Certificate, at: dt.datetime | None = None) -> str:
    report = snp.parse_report(raw)
    product, kind = snp.verify_chain(cert, at)
    snp.check_cert_matches(report, cert, product, kind)
    snp.verify_signature(report, cert)
    return f"{product} {kind}"


def _evidence(raw: bytes, cert_der: bytes, nonce: str, measurement: str = VEIL_M) -> Evidence:
    doc = {"report": base64.b64encode(raw).decode(), "cert": base64.b64encode(cert_der).decode()}
    report = base64.b64encode(json.dumps(doc).encode()).decode()
    return Evidence("ns/s/app", measurement, nonce, "sev-snp", report)


# -- real evidence ----------------------------------------------------------------------------
def test_parse_real_report() -> None:
    r = snp.parse_report(_report())
    assert r.version == 2 and r.guest_svn == 4 and r.vmpl == 0 and r.signature_algo == 1
    assert r.measurement.hex() == MEASUREMENT_HEX
    assert r.policy == 0x3001F and not r.debug
    assert r.signing_key == 0  # VCEK
    assert r.tcb("Milan") == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73}
    assert r.report_data[:8].hex() == "ec6c52d7533cc2c4" and r.report_data[32:] == bytes(32)
    assert len(r.chip_id) == 64 and r.chip_id[:4].hex() == "c38427a3"


def test_real_vcek_and_vlek_reports_verify_through_amd_chain() -> None:
    assert _check(_report(), _cert("test-vcek.der")) == "Milan VCEK"
    vlek = _cert("test-vlek.der")
    assert _check(_report("test-vlek-report.bin"), vlek, BEFORE_VLEK_EXPIRY) == "Milan VLEK"
    # the sample VLEK expired in December 2025
    with pytest.raises(Refused, match=r"VLEK certificate is valid from .* not now"):
        _check(_report("test-vlek-report.bin"), vlek, vlek.not_valid_after_utc + dt.timedelta(1))


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_invalid_vceks_are_rejected(name: str) -> None:
    with pytest.raises(Refused, match="does not verify with AMD's SEV-Milan key"):
        _check(_report(), _cert(name))


def test_tampered_report_fails_signature() -> None:
    raw = bytearray(_report())
    raw[0x90] ^= 0x01  # one bit of the launch measurement
    with pytest.raises(Refused, match="signature does not verify"):
        _check(bytes(raw), _cert("test-vcek.der"))


def test_vcek_of_another_chip_or_tcb_is_refused() -> None:
    raw = bytearray(_report())
    raw[0x1A0] ^= 0xFF
    with pytest.raises(Refused, match="another chip"):
        _check(bytes(raw), _cert("test-vcek.der"))
    raw = bytearray(_report())
    raw[0x186] = 9  # reported SNP firmware SVN 9; the VCEK was issued for 8
    with pytest.raises(Refused, match="issued for TCB snp 8, the report has 9"):
        _check(bytes(raw), _cert("test-vcek.der"))


def test_vlek_for_a_vcek_report_is_refused() -> None:
    with pytest.raises(Refused, match="a VCEK signed it, the certificate is a VLEK"):
        _check(_report(), _cert("test-vlek.der"), BEFORE_VLEK_EXPIRY)


def test_every_product_line_chains_to_its_ark_and_foreign_issuers_are_refused() -> None:
    roots = snp.amd_roots()
    assert sorted(roots) == ["Genoa", "Milan", "Turin"]
    for product, line in roots.items():
        assert line.ark.subject == line.ark.issuer
        assert (
            line.ask.issuer == line.ark.subject
            and f"SEV-{product}" in line.ask.subject.rfc4514_string()
        )
    key = ec.generate_private_key(ec.SECP384R1())
    fake = _make_cert("SEV-VCEK", "SEV-Nowhere", key.public_key(), key, [])
    with pytest.raises(Refused, match="is not an AMD key"):
        snp.verify_chain(fake)
    # same issuer name as AMD's Milan ASK, but not AMD's signature
    impostor = _make_cert("SEV-VCEK", "SEV-Milan", key.public_key(), key, [])
    impostor_named = _rename_issuer(impostor, roots["Milan"].ask.subject, key)
    with pytest.raises(Refused, match="does not verify with AMD's SEV-Milan key"):
        snp.verify_chain(impostor_named)


def test_real_evidence_is_refused_without_the_nonce_binding() -> None:
    nonce = base64.b64encode(os.urandom(32)).decode()
    ev = _evidence(_report(), (DATA / "test-vcek.der").read_bytes(), nonce)
    with pytest.raises(Refused, match="does not bind this nonce and measurement"):
        verifier_for("sev-snp").verify(ev)


@pytest.mark.parametrize(
    "report",
    ["not base64!", base64.b64encode(b"[]").decode(), base64.b64encode(b'{"report": 1}').decode()],
)
def test_malformed_evidence_names_the_format(report: str) -> None:
    ev = Evidence("ns/s/app", VEIL_M, "AAAA", "sev-snp", report)
    with pytest.raises(Refused, match=re.escape('sev-snp evidence is base64 of {"report"')):
        verifier_for("sev-snp").verify(ev)


def test_short_report_is_refused() -> None:
    with pytest.raises(Refused, match="1184 bytes, this one 1000"):
        snp.parse_report(_report()[:1000])


# -- the whole path, with roots made here (tests/cas/snp_roots.py) ----------------------------
_make_cert = make_cert
_rename_issuer = rename_issuer
_signed_report = signed_report


@pytest.fixture(scope="module")
def test_amd() -> dict[str, Any]:
    return make_test_amd()


def _session(platforms: dict[str, Any], mode: str = "production") -> SessionDoc:
    return SessionDoc.model_validate(
        {
            "name": "s",
            "security": {"attestation": {"mode": mode}},
            "services": [
                {
                    "name": "app",
                    "command": "python3 app.py",
                    "attestation": {"measurement": [VEIL_M], "platforms": platforms},
                }
            ],
        }
    )


def test_full_path_binds_nonce_and_is_judged_by_the_session(
    test_amd: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snp, "amd_roots", lambda: {"Milan": test_amd["line"]})
    from cryptography.hazmat.primitives import serialization

    der = test_amd["vcek"].public_bytes(serialization.Encoding.DER)
    nonce = base64.b64encode(os.urandom(32)).decode()
    binding = expected_report_data(nonce, VEIL_M)
    assert binding == hashlib.sha512(base64.b64decode(nonce) + bytes.fromhex(VEIL_M)).digest()
    raw = _signed_report(test_amd, binding)
    claims = verifier_for("sev-snp").verify(_evidence(raw, der, nonce))
    assert claims.hardware and claims.launch == "11" * 48 and not claims.debug
    assert claims.tcb == {"bootloader": 3, "tee": 0, "snp": 20, "microcode": 209}

    launch = "11" * 48
    ok = _session({"sev-snp": {"measurement": [launch], "min_tcb": {"snp": 20}}})
    svc = ok.services[0]
    assert judge(claims, ok.security.attestation, svc) == VEIL_M
    for platforms, reason in [
        ({}, "accepts no sev-snp evidence"),
        ({"sev-snp": {"measurement": ["22" * 48]}}, "launch measurement 1111.* is not one"),
        ({"sev-snp": {"measurement": [launch], "min_tcb": {"snp": 21}}}, "snp is 20, .* >= 21"),
        ({"sev-snp": {"measurement": [launch], "min_tcb": {"fmc": 1}}}, "no TCB component 'fmc'"),
    ]:
        doc = _session(platforms)
        with pytest.raises(Refused, match=reason):
            judge(claims, doc.security.attestation, doc.services[0])

    # the same report for another measurement or nonce does not bind
    with pytest.raises(Refused, match="does not bind"):
        verifier_for("sev-snp").verify(_evidence(raw, der, nonce, measurement="cd" * 32))
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(Refused, match="does not bind"):
        verifier_for("sev-snp").verify(_evidence(raw, der, other))

    # a guest whose policy allows debugging: only debug sessions take it
    dbg = verifier_for("sev-snp").verify(
        _evidence(_signed_report(test_amd, binding, policy=0x30000 | snp.POLICY_DEBUG), der, nonce)
    )
    assert dbg.debug
    with pytest.raises(Refused, match="debugging enabled"):
        judge(dbg, ok.security.attestation, svc)
    lax = _session({"sev-snp": {"measurement": [launch]}}, mode="debug")
    assert judge(dbg, lax.security.attestation, lax.services[0]) == VEIL_M


def test_report_fields_from_amds_layout() -> None:
    """Policy bit 19 is DEBUG, the TCB bytes by product line (Turin added the FMC byte), the
    host data 32 bytes at 0xC0 (AMD SEV-SNP ABI, ATTESTATION_REPORT), on a report whose bytes
    all differ, where one read a byte off would show."""
    raw = bytearray(_report())
    tcb = bytes([11, 12, 13, 14, 15, 16, 17, 18])
    raw[0x180:0x188] = tcb
    raw[0xC0:0xE1] = bytes(range(1, 34))
    for policy, debug in [(0x30000 | (1 << 19), True), (0x30000 | (1 << 20), False),
                          (0x30000 | (1 << 18), False), (0x3001F, False)]:
        raw[0x08:0x10] = policy.to_bytes(8, "little")
        r = snp.parse_report(bytes(raw))
        assert r.policy == policy and r.debug is debug, hex(policy)
    assert r.tcb("Turin") == {"fmc": 11, "bootloader": 12, "tee": 13, "snp": 14,
                              "microcode": 18}
    assert r.tcb("Genoa") == r.tcb("Milan") == {"bootloader": 11, "tee": 12, "snp": 17,
                                                "microcode": 18}
    assert r.host_data == bytes(range(1, 33))
    raw[0:4] = (1).to_bytes(4, "little")
    with pytest.raises(Refused, match="version 1 is not supported"):
        snp.parse_report(bytes(raw))
