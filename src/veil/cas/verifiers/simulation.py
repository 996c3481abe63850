"""The `simulation` verifier: evidence without hardware.

The report is base64 of `{"measurement": ..., "nonce": ...}`. Nothing backs it, so it proves
only that the caller knows a fresh nonce and claims a measurement: anybody who can reach CAS can
write such a report. `judge` accepts it only for sessions that tolerate debug mode.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from veil.cas.verifiers import Claims, Evidence, Refused

__all__ = ["SimulationVerifier"]


class SimulationVerifier:
    platform = "simulation"

    def verify(self, evidence: Evidence) -> Claims:
        try:
            report = json.loads(base64.b64decode(evidence.report, validate=True))
        except (binascii.Error, ValueError):
            raise Refused("the simulation report is not base64 of a JSON object") from None
        if not isinstance(report, dict):
            raise Refused("the simulation report is not a JSON object")
        if not hmac.compare_digest(str(report.get("nonce", "")), evidence.nonce):
            raise Refused("the report is not bound to this nonce")
        if not hmac.compare_digest(str(report.get("measurement", "")), evidence.measurement):
            raise Refused("the report's measurement differs from the evidence's")
        return Claims(self.platform, evidence.measurement, hardware=False)
