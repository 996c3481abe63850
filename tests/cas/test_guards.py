"""Fast tests of the checks that guard CAS's promises, one per check, so that a mutation that
weakens one fails here (scripts/mutation.sh runs them against mutants): the simulation
verifier's bindings, the judgement of claims, the nonce's MAC, expiry and spelling, and the
rows' authentication. The same attacks run against a real server in test_nonces_exports.py
and test_integrity.py."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import struct
import time
from types import SimpleNamespace
from typing import Any

import pytest

from veil.cas.attest import _check_nonce, _nonce_mac, new_nonce
from veil.cas.core import Refusal
from veil.cas.integrity import ZERO, Counter, Integrity, State, Tampered
from veil.cas.verifiers import (
    VERIFIERS,
    Claims,
    Evidence,
    Refused,
    expected_report_data,
    judge,
    verifier_for,
)
from veil.cas.verifiers.simulation import SimulationVerifier
from veil.session.model import SessionDoc

M1, M2 = "1" * 64, "2" * 64
CID = "ns/s/app"
CAS: Any = SimpleNamespace(keys=SimpleNamespace(nonce=b"n" * 32))


def _evidence(report_nonce: str = "bm9uY2U=", report_measurement: str = M1) -> Evidence:
    """Evidence for nonce "bm9uY2U=" and M1, whose report says what the arguments say."""
    body = {"measurement": report_measurement, "nonce": report_nonce}
    rep = base64.b64encode(json.dumps(body).encode()).decode()
    return Evidence(CID, M1, "bm9uY2U=", "simulation", rep)


def test_simulation_evidence_binds_nonce_and_measurement() -> None:
    v = SimulationVerifier()
    claims = v.verify(_evidence())
    assert claims == Claims("simulation", M1, hardware=False)
    with pytest.raises(Refused, match="not bound to this nonce"):
        v.verify(_evidence(report_nonce="b3RoZXI="))
    with pytest.raises(Refused, match="measurement differs"):
        v.verify(_evidence(report_measurement=M2))
    good = _evidence().report
    for bad in ("!!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{").decode(),
                good[:8] + "*" + good[8:]):  # a report in another spelling is not the report
        with pytest.raises(Refused):
            v.verify(Evidence(CID, M1, "bm9uY2U=", "simulation", bad))


def test_evidence_and_claims_cannot_change_once_made() -> None:
    """A verifier's verdict is what it returned: nothing downstream can edit the claims (or
    the evidence they were judged against) before the judgement."""
    claims = SimulationVerifier().verify(_evidence())
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.measurement = M2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        _evidence().nonce = "b3RoZXI="  # type: ignore[misc]


def _doc(mode: str = "debug", **attestation: Any) -> SessionDoc:
    return SessionDoc.model_validate(
        {
            "version": "0.3",
            "name": "s",
            "security": {"attestation": {"mode": mode}},
            "services": [
                {"name": "app", "command": "x", "attestation": {"measurement": [M1], **attestation}}
            ],
        }
    )


def test_judge_compares_every_claim() -> None:
    doc = _doc()
    svc = doc.service("app")
    assert svc is not None
    assert judge(Claims("simulation", M1, hardware=False), doc.security.attestation, svc) == M1
    with pytest.raises(Refused, match="measurement does not match"):
        judge(Claims("simulation", M2, hardware=False), doc.security.attestation, svc)
    prod = _doc("production")
    psvc = prod.service("app")
    assert psvc is not None
    with pytest.raises(Refused, match="not accepted in production"):
        judge(Claims("simulation", M1, hardware=False), prod.security.attestation, psvc)
    hw = _doc("production", platforms={"sev-snp": {"measurement": ["a" * 96],
                                                    "min_tcb": {"snp": 8}}})
    hsvc = hw.service("app")
    assert hsvc is not None
    policy = hw.security.attestation
    ok = Claims("sev-snp", M1, hardware=True, launch="a" * 96, tcb={"snp": 8})
    assert judge(ok, policy, hsvc) == M1
    for claims, why in [
        (Claims("tdx", M1, hardware=True, launch="a" * 96), "accepts no tdx"),
        (Claims("sev-snp", M1, hardware=True, launch="b" * 96, tcb={"snp": 8}), "launch"),
        (Claims("sev-snp", M1, hardware=True, launch="a" * 96, tcb={"snp": 7}), "requires >= 8"),
        (Claims("sev-snp", M1, hardware=True, launch="a" * 96), "no TCB component"),
        (Claims("sev-snp", M1, hardware=True, launch="a" * 96, tcb={"snp": 9}, debug=True),
         "debugging enabled"),
        (Claims("sev-snp", M2, hardware=True, launch="a" * 96, tcb={"snp": 9}), "measurement"),
    ]:
        with pytest.raises(Refused, match=why):
            judge(claims, policy, hsvc)


def _nonce(expires: int, config_id: str = CID) -> str:
    body = struct.pack(">I", expires) + b"\x05" * 12
    return base64.b64encode(body + _nonce_mac(CAS, config_id, body)).decode()


def test_nonce_checks() -> None:
    fresh = new_nonce(CAS, CID)["nonce"]
    assert _check_nonce(CAS, CID, fresh) > time.time()
    future = int(time.time()) + 30
    assert _check_nonce(CAS, CID, _nonce(future)) == future

    def refused(status: int, why: str, config_id: str, nonce: str) -> None:
        with pytest.raises(Refusal, match=why) as r:
            _check_nonce(CAS, config_id, nonce)
        assert r.value.status == status  # 400: malformed, 403: not (or no longer) good

    refused(403, "expired", CID, _nonce(int(time.time()) - 1))
    refused(403, "not issued by this CAS for this config id", "ns/s/other", _nonce(future))
    raw = bytearray(base64.b64decode(_nonce(future)))
    raw[20] ^= 1
    refused(403, "not issued", CID, base64.b64encode(bytes(raw)).decode())
    # the 43rd character carries 4 bits of the last byte and 2 unused ones: flipping its
    # lowest bit spells the same 32 bytes differently
    good = _nonce(future)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    other = good[:42] + alphabet[alphabet.index(good[42]) ^ 1] + good[43:]
    assert other != good and base64.b64decode(other) == base64.b64decode(good)
    refused(400, "canonical", CID, other)
    refused(400, "not base64", CID, "!!!!")
    refused(400, "not one this CAS issued", CID, base64.b64encode(b"x" * 31).decode())


def test_a_nonce_expiring_this_second_is_still_good() -> None:
    now = int(time.time()) + 2
    assert _check_nonce(CAS, CID, _nonce(now)) == now


def test_state_row_and_counter() -> None:
    integ = Integrity(b"r" * 32, b"m" * 32, b"a" * 32, Counter())
    integ.check_state(State(0, "0" * 64, ZERO, ""), 0)  # genesis
    digest = integ.fold(ZERO, integ.delta(["x" * 64]))
    mac = integ.state_mac(5, "c" * 64, digest)
    integ.check_state(State(5, "c" * 64, digest, mac), 5)
    with pytest.raises(Tampered, match="changed outside CAS"):
        integ.check_state(State(5, "c" * 64, ZERO, mac), 0)
    with pytest.raises(Tampered, match="changed outside CAS"):
        integ.check_state(State(6, "c" * 64, digest, mac), 0)
    with pytest.raises(Tampered, match="changed outside CAS"):
        integ.check_state(State(0, "0" * 64, digest, ""), 0)
    with pytest.raises(Tampered, match="rolled back"):
        integ.check_state(State(5, "c" * 64, digest, mac), 6)
    assert integ.delta(["x" * 64], ["x" * 64]) == 0
    assert integ.fold(digest, integ.delta(removed=["x" * 64])) == ZERO
    assert integ.mac("t", 1) != integ.mac("t", "1") and integ.mac("t", 1) != integ.mac("u", 1)


def test_report_data_binds_the_nonce_bytes_and_the_measurement() -> None:
    nonce = base64.b64encode(bytes(range(32))).decode()
    want = hashlib.sha512(bytes(range(32)) + bytes.fromhex(M1)).digest()
    assert expected_report_data(nonce, M1) == want
    assert expected_report_data(nonce, M2) != want
    # a character outside the alphabet is refused, not skipped: the bytes bound must be the
    # nonce's, whatever spelling reached the verifier
    for bad_nonce, meas in (("!!" + nonce[2:], M1), (nonce[:10] + "!" + nonce[10:], M1),
                            (nonce, "zz" * 32)):
        with pytest.raises(Refused, match="malformed"):
            expected_report_data(bad_nonce, meas)


def test_every_platform_has_its_verifier() -> None:
    assert isinstance(verifier_for("simulation"), SimulationVerifier)
    assert {"simulation", "sev-snp", "tdx", "sgx-dcap"} <= set(VERIFIERS)
    with pytest.raises(Refused, match=r"no verifier for platform 'x'.*sev-snp, sgx-dcap"):
        verifier_for("x")
