"""Attestation verifiers, one per `platform` of the evidence, and the policy check after them.

A verifier checks the platform's evidence cryptographically — signatures, certificate chains to
the vendor roots shipped with CAS, the binding of the nonce and the Veil measurement into the
report — and returns the claims it vouches for. It needs neither the database nor the session,
so CAS runs it before taking the write lock. `judge` then compares the claims with the session:
production mode, debug switch, the platform's launch measurement, minimum TCB and the Veil
measurement. Platforms: `simulation`, `sev-snp`, `tdx`, `sgx-dcap`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from veil.session.model import AttestationPolicy, Service

__all__ = [
    "VERIFIERS",
    "Claims",
    "Evidence",
    "Refused",
    "Verifier",
    "expected_report_data",
    "judge",
    "register",
    "verifier_for",
]


@dataclass(frozen=True)
class Evidence:
    config_id: str
    measurement: str
    nonce: str
    platform: str
    report: str


@dataclass(frozen=True)
class Claims:
    """What a verifier vouches for."""

    platform: str
    measurement: str  # the Veil measurement the report binds (64 hex)
    hardware: bool  # False: nothing but the caller's word backs the claims
    launch: str | None = None  # SEV-SNP measurement, TDX MRTD, SGX MRENCLAVE (hex)
    debug: bool = False  # the TEE lets its host read its memory
    tcb: dict[str, int] = field(default_factory=dict)


class Refused(Exception):
    """The evidence does not convince the verifier; the message is the reason."""


class Verifier(Protocol):
    platform: str

    def verify(self, evidence: Evidence) -> Claims:
        """Return the claims the evidence proves, or raise Refused."""
        ...


VERIFIERS: dict[str, Verifier] = {}


def register(v: Verifier) -> None:
    VERIFIERS[v.platform] = v


def verifier_for(platform: str, table: Mapping[str, Verifier] | None = None) -> Verifier:
    """The verifier for `platform` from `table` (default: the registered ones)."""
    verifiers = VERIFIERS if table is None else table
    v = verifiers.get(platform)
    if v is None:
        known = ", ".join(sorted(verifiers)) or "none"
        raise Refused(f"no verifier for platform {platform!r}; this CAS accepts: {known}")
    return v


def expected_report_data(nonce: str, measurement: str) -> bytes:
    """The 64 bytes a hardware report's report_data must hold (docs/attestation-protocol.md):
    SHA-512 over the nonce's 32 bytes followed by the 32 bytes of the Veil measurement."""
    try:
        raw = base64.b64decode(nonce, validate=True) + bytes.fromhex(measurement)
    except (binascii.Error, ValueError):
        raise Refused("the nonce or the measurement is malformed") from None
    return hashlib.sha512(raw).digest()


def judge(claims: Claims, policy: AttestationPolicy, service: Service) -> str:
    """Compare verified claims with the session; return the Veil measurement or raise Refused."""
    if not claims.hardware and not policy.allows_simulation:
        raise Refused(f"{claims.platform} evidence is not accepted in production mode")
    if claims.debug and not policy.allows_debug:
        raise Refused(
            f"the {claims.platform} TEE runs with debugging enabled, which a production "
            "session does not accept (tolerate: [debug-mode] to allow it)"
        )
    if claims.hardware:
        accepted = service.attestation.platforms.get(claims.platform)  # type: ignore[call-overload]
        if accepted is None:
            raise Refused(f"the service accepts no {claims.platform} evidence")
        if claims.launch not in accepted.measurement:
            raise Refused(
                f"{claims.platform} launch measurement {claims.launch} is not one the service "
                f"accepts ({len(accepted.measurement)} value(s))"
            )
        for part, lowest in sorted(accepted.min_tcb.items()):
            got = claims.tcb.get(part)
            if got is None:
                raise Refused(f"the {claims.platform} report has no TCB component {part!r}")
            if got < lowest:
                raise Refused(f"TCB component {part} is {got}, the service requires >= {lowest}")
    if claims.measurement not in service.attestation.measurement:
        raise Refused(
            f"measurement does not match the session (got {claims.measurement}, the session "
            f"allows {len(service.attestation.measurement)} other value(s))"
        )
    return claims.measurement


def _register_builtin() -> None:
    from veil.cas.verifiers.quote import SgxDcapVerifier, TdxVerifier
    from veil.cas.verifiers.simulation import SimulationVerifier
    from veil.cas.verifiers.snp import SnpVerifier

    for v in (SimulationVerifier(), SnpVerifier(), TdxVerifier(), SgxDcapVerifier()):
        register(v)


_register_builtin()
