"""CAS's own files: TLS key and certificate, client CA, master key.

The master key is a file of its own (mode 0600), never in the database: whoever holds only the
database sees sealed secrets and an audit chain they cannot forge. Every other key CAS needs is
derived from it with HKDF, one label per purpose.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veil.cas import pki
from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_bytes
from veil.paths import home_dir

__all__ = ["CasFiles", "Keyring", "default_state_dir", "init_state", "load_keyring"]

MASTER_KEY_BYTES = 32


def default_state_dir() -> Path:
    env = os.environ.get("VEIL_CAS_DIR")
    return Path(env) if env else home_dir() / "cas"


@dataclass(frozen=True)
class CasFiles:
    root: Path

    @property
    def key(self) -> Path:
        return self.root / "cas-key.pem"

    @property
    def cert(self) -> Path:
        return self.root / "cas-cert.pem"

    @property
    def client_ca_key(self) -> Path:
        return self.root / "client-ca-key.pem"

    @property
    def client_ca(self) -> Path:
        return self.root / "client-ca.pem"

    @property
    def master_key(self) -> Path:
        return self.root / "master.key"

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.root / 'cas.db'}"

    def exists(self) -> bool:
        return all(
            p.exists()
            for p in (self.key, self.cert, self.client_ca_key, self.client_ca, self.master_key)
        )

    def public_key_b64(self) -> str:
        return pki.spki_b64(_load_ec_key(self.key).public_key())


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise UserError(
            f"CAS state not found: {path} is missing", hint="run `veil cas init` first"
        ) from None
    except ValueError as err:
        raise OperationalError(f"cannot read the key in {path}: {err}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise OperationalError(f"{path} does not hold an EC key")
    return key


def init_state(root: Path, hosts: list[str], *, force: bool = False) -> CasFiles:
    """Make CAS's keys and certificates; refuse to overwrite unless `force`."""
    files = CasFiles(root)
    if files.exists() and not force:
        return files
    if files.master_key.exists() and not force:
        raise UserError(
            f"{root} holds a master key but not every CAS file",
            hint="use --force to make new keys (sealed secrets of the old key become unreadable)",
        )
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    key = pki.new_ec_key()
    ca_key = pki.new_ec_key()
    atomic_write_bytes(files.key, pki.key_pem(key), 0o600)
    atomic_write_bytes(files.cert, pki.self_signed_server_cert(key, hosts), 0o644)
    atomic_write_bytes(files.client_ca_key, pki.key_pem(ca_key), 0o600)
    atomic_write_bytes(files.client_ca, pki.make_ca(ca_key, "veil-cas client CA"), 0o644)
    atomic_write_bytes(files.master_key, secrets.token_bytes(MASTER_KEY_BYTES), 0o600)
    return files


@dataclass(frozen=True)
class Keyring:
    """Keys derived from the master key, one per purpose."""

    seal: bytes  # AES-256-GCM key for secrets at rest
    nonce: bytes  # HMAC key that makes attestation nonces unforgeable
    audit: bytes  # HMAC key of the audit chain
    fingerprint: bytes  # HMAC key for fingerprints of secret definitions (explicit values)
    client_ca_key: ec.EllipticCurvePrivateKey
    client_ca_pem: bytes


def _derive(master: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(master)


def load_keyring(files: CasFiles) -> Keyring:
    try:
        master = files.master_key.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"CAS master key not found at {files.master_key}", hint="run `veil cas init` first"
        ) from None
    if len(master) != MASTER_KEY_BYTES:
        raise OperationalError(f"{files.master_key} is not a {MASTER_KEY_BYTES}-byte master key")
    return Keyring(
        seal=_derive(master, "veil-cas seal v1"),
        nonce=_derive(master, "veil-cas nonce v1"),
        audit=_derive(master, "veil-cas audit v1"),
        fingerprint=_derive(master, "veil-cas fingerprint v1"),
        client_ca_key=_load_ec_key(files.client_ca_key),
        client_ca_pem=files.client_ca.read_bytes(),
    )
