"""Which CAS key a mesh apply expects, and checking that the CAS holds it before anything is sent.

The expected key, first found wins:
  1. the mesh's `cas_key` for the security CAS,
  2. the key `veil cas trust ADDR KEY` recorded for that address,
  3. the key `veil cas init` saved in the client config (for its `--addr`, or any address when
     it saved none: the key, not the address, identifies a CAS).
Only a mesh whose CAS `tolerance` says `--only_for_testing-trust-any` may go on without one: the
key the server presents is then used, with a warning that names its fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_text
from veil.paths import config_dir

__all__ = ["ExpectedKey", "expected_key", "fingerprint", "normalize_addr", "presented_key",
           "trust", "trusted"]

DEFAULT_PORT = 8081


def normalize_addr(addr: str) -> str:
    """`https://cas.example/` → `cas.example:8081`; the form addresses are recorded in."""
    a = addr.strip().removeprefix("https://").rstrip("/")
    host, sep, port = a.rpartition(":")
    if not sep or "]" in port:
        return f"{a}:{DEFAULT_PORT}"
    if not port.isdigit():
        raise UserError(f"CAS address {addr!r}: the port is not a number")
    return f"{host}:{port}"


def _decode(key_b64: str, what: str) -> bytes:
    try:
        der = base64.b64decode(key_b64.strip(), validate=True)
        serialization.load_der_public_key(der)
    except (binascii.Error, ValueError):
        raise UserError(f"{what} is not a CAS public key (base64 DER, what `veil cas key` "
                        "prints)") from None
    return der


def fingerprint(der: bytes) -> str:
    """A short, comparable name of a public key: SHA-256 of its DER, 32 hex digits."""
    h = hashlib.sha256(der).hexdigest()[:32]
    return "SHA256:" + ":".join(h[i:i + 4] for i in range(0, 32, 4))


def _trust_file() -> Path:
    return config_dir() / "trusted-cas.json"


def trusted() -> dict[str, str]:
    path = _trust_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is not valid JSON", hint="fix or delete it, then "
                        "`veil cas trust ADDR KEY` again") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def trust(addr: str, key_b64: str) -> tuple[str, str]:
    """Record KEY as the key of the CAS at ADDR; returns (normalized address, fingerprint)."""
    der = _decode(key_b64, "KEY")
    norm = normalize_addr(addr)
    data = trusted()
    data[norm] = base64.b64encode(der).decode()
    atomic_write_text(_trust_file(), json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)
    return norm, fingerprint(der)


@dataclass(frozen=True)
class ExpectedKey:
    key_b64: str | None  # None: trust-any and nothing recorded
    source: str  # where it came from, for messages

    @property
    def der(self) -> bytes | None:
        return base64.b64decode(self.key_b64) if self.key_b64 else None


def expected_key(addr: str, mesh_key: str | None, *, trust_any: bool,
                 where: str = "the mesh") -> ExpectedKey:
    norm = normalize_addr(addr)
    if mesh_key:
        _decode(mesh_key, f"cas_key of {where}")
        return ExpectedKey(mesh_key.strip(), f"cas_key in {where}")
    recorded = trusted().get(norm)
    if recorded:
        return ExpectedKey(recorded, f"`veil cas trust` for {norm} ({_trust_file()})")
    from veil.cas.client import client_config_path

    path = client_config_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        saved_addr = saved.get("addr")
        if saved.get("cas_key") and (not saved_addr or normalize_addr(saved_addr) == norm):
            return ExpectedKey(saved["cas_key"], f"`veil cas init` ({path})")
    if trust_any:
        return ExpectedKey(None, "nothing (tolerance --only_for_testing-trust-any)")
    raise UserError(
        f"no key is known for the CAS at {norm}: Veil sends sessions only to a CAS whose "
        "key it can check",
        hint=f"add `cas_key:` to the mesh's security CAS, or run `veil cas trust {norm} KEY` "
        "with the key `veil cas key` prints on the CAS machine")


def presented_key(addr: str, timeout: float = 10.0) -> bytes:
    """The public key (DER) of the certificate the server at `addr` presents."""
    host, _, port = normalize_addr(addr).rpartition(":")
    try:
        pem = ssl.get_server_certificate((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as err:
        raise OperationalError(f"cannot reach CAS at {addr}: {err}",
                               hint="is `veil cas serve` running there?") from None
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
