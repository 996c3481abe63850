"""Session documents and a launcher-like attestation client for the CAS tests."""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import httpx

M1 = "1" * 64
M2 = "2" * 64


def session(name: str = "hello", mode: str = "debug", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": "0.3",
        "name": name,
        "security": {"attestation": {"mode": mode}},
        "services": [
            {
                "name": "app",
                "image_name": "img",
                "command": "python3 print_env.py --pw $$SCONE::password$$",
                "pwd": "/python",
                "environment": {"API_USER": "myself", "API_PASSWORD": "$$SCONE::password$$"},
                "attestation": {"measurement": [M1]},
            }
        ],
        "secrets": [{"name": "password", "kind": "ascii", "size": 10}],
        "images": [
            {
                "name": "img",
                "injection_files": [
                    {"path": "/etc/app.conf", "content": "pw=$$SCONE::password$$", "mode": "0640"}
                ],
            }
        ],
    }
    doc.update(extra)
    return doc


class Launcher:
    """What the launcher does: nonce, evidence, configuration — no client certificate."""

    def __init__(self, addr: str, cert_pem: bytes) -> None:
        ctx = ssl.create_default_context(cadata=cert_pem.decode())
        ctx.check_hostname = False
        self.http = httpx.Client(base_url=f"https://{addr}", verify=ctx, timeout=30)

    def nonce(self, config_id: str) -> httpx.Response:
        return self.http.post("/v1/attestation/nonce", json={"config_id": config_id})

    def evidence(self, config_id: str, measurement: str, nonce: str) -> dict[str, str]:
        report = json.dumps({"measurement": measurement, "nonce": nonce}).encode()
        return {
            "config_id": config_id,
            "measurement": measurement,
            "nonce": nonce,
            "platform": "simulation",
            "report": base64.b64encode(report).decode(),
        }

    def provision(self, evidence: dict[str, str]) -> httpx.Response:
        return self.http.post("/v1/attestation/provision", json=evidence)

    def attest(self, config_id: str, measurement: str = M1) -> httpx.Response:
        r = self.nonce(config_id)
        if r.status_code != 200:
            return r
        return self.provision(self.evidence(config_id, measurement, r.json()["nonce"]))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
