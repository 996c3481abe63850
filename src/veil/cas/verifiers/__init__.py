"""Attestation verifiers, one per `platform` of the evidence.

A verifier checks the platform's report against the evidence and the session's attestation
policy and returns the measurement it vouches for; CAS then compares that measurement with the
session's. Hardware verifiers (AMD SEV-SNP, Intel TDX, SGX DCAP) plug in here by platform name;
this release ships `simulation` only, and refuses every other platform by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from veil.policy.session import AttestationPolicy

__all__ = ["VERIFIERS", "Evidence", "Refused", "Verifier", "register", "verifier_for"]


@dataclass(frozen=True)
class Evidence:
    config_id: str
    measurement: str
    nonce: str
    platform: str
    report: str


class Refused(Exception):
    """The evidence does not convince the verifier; the message is the reason."""


class Verifier(Protocol):
    platform: str

    def verify(self, evidence: Evidence, policy: AttestationPolicy) -> str:
        """Return the measurement the report vouches for, or raise Refused."""
        ...


VERIFIERS: dict[str, Verifier] = {}


def register(v: Verifier) -> None:
    VERIFIERS[v.platform] = v


def verifier_for(platform: str) -> Verifier:
    v = VERIFIERS.get(platform)
    if v is None:
        known = ", ".join(sorted(VERIFIERS)) or "none"
        raise Refused(f"no verifier for platform {platform!r}; this CAS accepts: {known}")
    return v


from veil.cas.verifiers import simulation as _simulation  # noqa: E402  (registers itself)

register(_simulation.SimulationVerifier())
