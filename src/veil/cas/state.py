"""CAS's own files: TLS key and certificate, client CA, master key (or the record of a PKCS#11
token that seals it, `veil.cas.keystore`).

The master key is a file of its own (mode 0600), never in the database: whoever holds only the
database sees sealed secrets and an audit chain they cannot forge. Every other key CAS needs is
derived from it with HKDF, one label per purpose.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veil.cas import keystore, pki
from veil.cas.integrity import CounterStore, FileCounter
from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_bytes
from veil.paths import home_dir

__all__ = [
    "CasFiles",
    "Keyring",
    "counter_store",
    "default_state_dir",
    "init_state",
    "load_keyring",
]

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
    def sealed_master(self) -> Path:
        """The master secret sealed by a PKCS#11 token (instead of `master_key`)."""
        return self.root / keystore.SEALED_NAME

    @property
    def counter(self) -> Path:
        """The high-water mark of the database's audit sequence (rollback detection)."""
        return self.root / "state-counter"

    @property
    def keystore_config(self) -> Path:
        return self.root / keystore.CONFIG_NAME

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.root / 'cas.db'}"

    def uses_pkcs11(self) -> bool:
        return self.keystore_config.exists()

    def exists(self) -> bool:
        master = (self.sealed_master,) if self.uses_pkcs11() else (self.master_key,)
        return all(
            p.exists() for p in (self.key, self.cert, self.client_ca_key, self.client_ca, *master)
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


def _same_token(a: keystore.Pkcs11Config | None, b: keystore.Pkcs11Config | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.module, a.token, a.key_label) == (b.module, b.token, b.key_label)


def init_state(
    root: Path,
    hosts: list[str],
    *,
    force: bool = False,
    pkcs11: keystore.Pkcs11Config | None = None,
    pin: str | None = None,
) -> CasFiles:
    """Make CAS's keys and certificates; refuse to overwrite unless `force`. With `pkcs11`
    (and its `pin`), the master secret is sealed by that token instead of kept in a file."""
    files = CasFiles(root)
    if files.exists() and not force:
        current = keystore.load_config(root)
        if pkcs11 is not None and not _same_token(current, pkcs11):
            raise UserError(
                f"{root} already holds CAS keys with another key store",
                hint="use --force to make new keys (secrets sealed under the old ones are lost)",
            )
        return files
    if (files.master_key.exists() or files.sealed_master.exists()) and not force:
        raise UserError(
            f"{root} holds a master key but not every CAS file",
            hint="use --force to make new keys (sealed secrets of the old key become unreadable)",
        )
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    if pkcs11 is not None:
        # first, so that a wrong PIN or a missing token leaves nothing written
        keystore.init_pkcs11(root, pkcs11, pin or "", MASTER_KEY_BYTES)
        files.master_key.unlink(missing_ok=True)
    key = pki.new_ec_key()
    ca_key = pki.new_ec_key()
    atomic_write_bytes(files.key, pki.key_pem(key), 0o600)
    atomic_write_bytes(files.cert, pki.self_signed_server_cert(key, hosts), 0o644)
    atomic_write_bytes(files.client_ca_key, pki.key_pem(ca_key), 0o600)
    atomic_write_bytes(files.client_ca, pki.make_ca(ca_key, "veil-cas client CA"), 0o644)
    if pkcs11 is None:
        atomic_write_bytes(files.master_key, secrets.token_bytes(MASTER_KEY_BYTES), 0o600)
        files.keystore_config.unlink(missing_ok=True)
        files.sealed_master.unlink(missing_ok=True)
    return files


@dataclass(frozen=True)
class Keyring:
    """Keys derived from the master key, one per purpose."""

    seal: bytes  # AES-256-GCM key for secrets at rest
    nonce: bytes  # HMAC key that makes attestation nonces unforgeable
    audit: bytes  # HMAC key of the audit chain
    fingerprint: bytes  # HMAC key for fingerprints of secret definitions (explicit values)
    rows: bytes  # HMAC key that authenticates every row CAS trusts (veil.cas.integrity)
    members: bytes  # PRF key of the state digest over those rows (veil.cas.integrity)
    client_ca_key: ec.EllipticCurvePrivateKey
    client_ca_pem: bytes
    # the PKCS#11 token's RNG (for `external` secrets); None with the file key store
    random: Callable[[int], bytes] | None = field(default=None, compare=False)
    # the token itself (it keeps the rollback counter); None with the file key store
    token: keystore.Pkcs11Store | None = field(default=None, compare=False, repr=False)


def _derive(master: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(master)


def load_keyring(files: CasFiles, pin_file: Path | None = None) -> Keyring:
    """The derived keys; with a PKCS#11 state the token unseals the master secret (its PIN from
    `pin_file`, else $VEIL_CAS_PKCS11_PIN, else the PIN file recorded at init)."""
    random: Callable[[int], bytes] | None = None
    token: keystore.Pkcs11Store | None = None
    if files.uses_pkcs11():
        master, token = keystore.open_master(files.root, pin_file)
        random = token.random
        where = str(files.sealed_master)
    else:
        try:
            master = files.master_key.read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"CAS master key not found at {files.master_key}", hint="run `veil cas init` first"
            ) from None
        where = str(files.master_key)
    if len(master) != MASTER_KEY_BYTES:
        raise OperationalError(f"{where} is not a {MASTER_KEY_BYTES}-byte master key")
    return Keyring(
        seal=_derive(master, "veil-cas seal v1"),
        nonce=_derive(master, "veil-cas nonce v1"),
        audit=_derive(master, "veil-cas audit v1"),
        fingerprint=_derive(master, "veil-cas fingerprint v1"),
        rows=_derive(master, "veil-cas rows v1"),
        members=_derive(master, "veil-cas members v1"),
        client_ca_key=_load_ec_key(files.client_ca_key),
        client_ca_pem=files.client_ca.read_bytes(),
        random=random,
        token=token,
    )


def counter_store(files: CasFiles, keys: Keyring) -> CounterStore:
    """Where the rollback high-water mark lives: in the PKCS#11 token when the master key is
    there, else in `state-counter` beside the master key."""
    if keys.token is not None:
        # one counter per master secret: CAS installations that share a token (each has its
        # own master secret sealed under the same token key) do not share their counters
        tag = hashlib.sha256(b"veil-cas counter\0" + keys.rows).hexdigest()[:16]
        label = f"{keys.token.config.key_label}-counter-{tag}"
        return keystore.TokenCounter(keys.token, label, files.root / "state-counter.lock")
    return FileCounter(files.counter)
