"""The client side of CAS that `veil` commands use (httpx).

Trust: the CAS key is pinned. The client first fetches the certificate CAS presents, accepts it
only if its public key is the pinned one, and from then on trusts exactly that certificate.
Identity: an EC key made on first use in `config_dir()/identity/`; on first contact with a CAS
the client sends a CSR and keeps the certificate CAS's client CA issues, one per CAS key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veil.cas import pki
from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_bytes, atomic_write_text
from veil.paths import config_dir

__all__ = ["CasClient", "client_config_path", "resolve_target", "save_client_config"]

DEFAULT_PORT = 8081


def client_config_path() -> Path:
    return config_dir() / "cas.json"


def save_client_config(addr: str | None, cas_key: str) -> Path:
    path = client_config_path()
    data = {"cas_key": cas_key, **({"addr": addr} if addr else {})}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)
    return path


def resolve_target(addr: str | None, cas_key: str | None) -> tuple[str, str]:
    """Flag, else environment (VEIL_CAS_ADDR/VEIL_CAS_KEY), else the saved client config."""
    saved: dict[str, str] = {}
    path = client_config_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            raise UserError(f"{path} is not valid JSON", hint="run `veil cas init` again") from None
    addr = addr or os.environ.get("VEIL_CAS_ADDR") or saved.get("addr")
    cas_key = cas_key or os.environ.get("VEIL_CAS_KEY") or saved.get("cas_key")
    if not addr:
        raise UserError("no CAS address", hint="pass --cas HOST:PORT or set VEIL_CAS_ADDR")
    if not cas_key:
        raise UserError(
            "no CAS key to pin",
            hint="pass --cas-key KEY (what `veil cas key` prints) or set VEIL_CAS_KEY",
        )
    return addr, cas_key


def _split(addr: str) -> tuple[str, int]:
    addr = addr.removeprefix("https://").rstrip("/")
    host, sep, port = addr.rpartition(":")
    if not sep or "]" in port:
        return addr.strip("[]"), DEFAULT_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise UserError(f"CAS address {addr!r}: the port is not a number") from None


def _identity_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    path = directory / "key.pem"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        atomic_write_bytes(path, pki.key_pem(pki.new_ec_key()), 0o600)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise OperationalError(f"{path} does not hold an EC key")
    return key


class CasClient:
    def __init__(
        self, addr: str, cas_key: str, identity_dir: Path | None = None, timeout: float = 30.0
    ) -> None:
        self.addr = addr
        self.host, self.port = _split(addr)
        try:
            self.pinned = base64.b64decode(cas_key, validate=True)
        except ValueError:
            raise UserError(
                "the CAS key is not base64", hint="use what `veil cas key` prints"
            ) from None
        self.identity_dir = identity_dir or config_dir() / "identity"
        self.timeout = timeout
        self._http: httpx.Client | None = None

    # -- trust and identity ---------------------------------------------------------------
    def _server_cert(self) -> str:
        try:
            pem = ssl.get_server_certificate((self.host, self.port), timeout=self.timeout)
        except OSError as err:
            raise OperationalError(
                f"cannot reach CAS at {self.addr}: {err}", hint="is `veil cas serve` running there?"
            ) from None
        cert = x509.load_pem_x509_certificate(pem.encode())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki != self.pinned:
            raise OperationalError(
                f"the server at {self.addr} does not hold the pinned CAS key",
                hint="check --cas-key / VEIL_CAS_KEY; someone may be in the middle",
            )
        return pem

    def _cert_path(self) -> Path:
        return self.identity_dir / f"cas-{hashlib.sha256(self.pinned).hexdigest()[:16]}.crt"

    def _context(self, server_pem: str, with_identity: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=server_pem)
        ctx.check_hostname = False  # the pinned key is the identity, not a host name
        if with_identity:
            ctx.load_cert_chain(self._cert_path(), self.identity_dir / "key.pem")
        return ctx

    def _register(self, server_pem: str) -> None:
        key = _identity_key(self.identity_dir)
        with httpx.Client(
            base_url=f"https://{self.host}:{self.port}",
            verify=self._context(server_pem, False),
            timeout=self.timeout,
        ) as http:
            r = self._checked(http.post("/v1/clients", json={"csr": pki.make_csr(key).decode()}))
        atomic_write_bytes(self._cert_path(), r.json()["certificate"].encode(), 0o600)

    def http(self) -> httpx.Client:
        if self._http is None:
            pem = self._server_cert()
            if not self._cert_path().exists():
                self._register(pem)
            self._http = httpx.Client(
                base_url=f"https://{self.host}:{self.port}",
                verify=self._context(pem, True),
                timeout=self.timeout,
            )
        return self._http

    def identity(self) -> str:
        return pki.identity_of_key(_identity_key(self.identity_dir).public_key())

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> CasClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------
    def _checked(self, r: httpx.Response) -> httpx.Response:
        if r.status_code < 400:
            return r
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:200]
        reason = detail.get("reason") if isinstance(detail, dict) else None
        if reason is None:
            reason = json.dumps(detail, sort_keys=True) if detail is not None else r.reason_phrase
        msg = f"CAS refused ({r.status_code}): {reason}"
        if r.status_code >= 500:
            raise OperationalError(msg)
        raise UserError(msg)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http().request(method, path, **kw)
        except httpx.HTTPError as err:
            raise OperationalError(f"CAS at {self.addr}: {err}") from None
        return self._checked(r).json()

    def create_session(self, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/namespaces/{namespace}/sessions", json=document))

    def update_session(self, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
        name = document.get("name", "")
        return dict(self._call("PUT", f"/v1/namespaces/{namespace}/sessions/{name}", json=document))

    def read_session(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/namespaces/{namespace}/sessions/{name}"))

    def current(self, namespace: str, names: list[str], known: dict[str, str] | None = None
                ) -> dict[str, dict[str, Any] | None]:
        """The current version of each named session (None where there is none); where
        `known` holds the content hash of the current version, without its document
        (`same: true`)."""
        body: dict[str, Any] = {"names": names}
        if known:
            body["known"] = known
        return dict(self._call("POST", f"/v1/namespaces/{namespace}/current", json=body))

    def transaction(self, namespace: str, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create or update every document at once: all of them or none."""
        out = self._call("POST", f"/v1/namespaces/{namespace}/transaction",
                         json={"sessions": documents})
        return list(out["written"])

    def history(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/namespaces/{namespace}/sessions/{name}/history"))
