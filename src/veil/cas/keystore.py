"""Where CAS's master secret lives: a file (mode 0600), or sealed under a key in a PKCS#11 token.

Every key CAS uses (sealing secrets, nonce and audit MACs, fingerprints) is derived from one
32-byte master secret (see `veil.cas.state`). The file store keeps that secret in `master.key`.
The PKCS#11 store keeps only `master.sealed`: the secret encrypted with AES-256-GCM *inside the
token* under a non-extractable AES key that was generated there and never leaves it. Without
the token and its PIN, the state directory and the database open nothing.

Envelope, not per-secret token calls: CAS checks thousands of nonce MACs per second, and a
token round trip per secret would make every provisioning wait on the token. The cost is that
the unsealed master secret lives in CAS's memory while it runs — as it does with the file.

The PIN is read from a file (`--pkcs11-pin-file`, `$VEIL_CAS_PKCS11_PIN_FILE`, or the path
recorded at init) or from `$VEIL_CAS_PKCS11_PIN`; the PIN itself is recorded nowhere and appears
in no message.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_bytes, atomic_write_text

__all__ = [
    "PIN_ENV",
    "PIN_FILE_ENV",
    "Pkcs11Config",
    "Pkcs11Store",
    "TokenCounter",
    "load_config",
    "read_pin",
    "save_config",
]

PIN_ENV = "VEIL_CAS_PKCS11_PIN"
PIN_FILE_ENV = "VEIL_CAS_PKCS11_PIN_FILE"
DEFAULT_KEY_LABEL = "veil-cas-master"
CONFIG_NAME = "keystore.json"
SEALED_NAME = "master.sealed"
_AAD = b"veil-cas master v1"  # binds the sealed blob to its purpose
_NONCE = 12


@dataclass(frozen=True)
class Pkcs11Config:
    """What `veil cas init --pkcs11-*` records in the state directory (no PIN)."""

    module: str
    token: str
    key_label: str = DEFAULT_KEY_LABEL
    pin_file: str | None = None


def load_config(root: Path) -> Pkcs11Config | None:
    """The recorded PKCS#11 choice, or None for the file store."""
    path = root / CONFIG_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise OperationalError(f"cannot read {path}: {err}") from None
    if data.get("kind") != "pkcs11":
        raise OperationalError(f"{path}: unknown key store kind {data.get('kind')!r}")
    try:
        return Pkcs11Config(
            module=data["module"],
            token=data["token"],
            key_label=data.get("key_label", DEFAULT_KEY_LABEL),
            pin_file=data.get("pin_file"),
        )
    except KeyError as err:
        raise OperationalError(f"{path}: missing field {err}") from None


def save_config(root: Path, config: Pkcs11Config) -> None:
    data = {"kind": "pkcs11", **asdict(config)}
    atomic_write_text(root / CONFIG_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)


def read_pin(config: Pkcs11Config, pin_file: Path | None = None) -> str:
    """The PIN: `pin_file` if given, else $VEIL_CAS_PKCS11_PIN, else the file named by
    $VEIL_CAS_PKCS11_PIN_FILE, else the recorded file."""
    if pin_file is None and os.environ.get(PIN_FILE_ENV):
        pin_file = Path(os.environ[PIN_FILE_ENV])
    if pin_file is None:
        env = os.environ.get(PIN_ENV)
        if env:
            return env
        if config.pin_file is None:
            raise UserError(
                "no PIN for the PKCS#11 token",
                hint=f"set {PIN_ENV} or give --pkcs11-pin-file FILE",
            )
        pin_file = Path(config.pin_file)
    try:
        pin = pin_file.read_text().strip("\r\n")
    except OSError as err:
        raise UserError(f"cannot read the PIN file {pin_file}: {err.strerror}") from None
    if not pin:
        raise UserError(f"the PIN file {pin_file} is empty")
    return pin


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise UserError(
            "this CAS uses a PKCS#11 token but python-pkcs11 is not installed",
            hint="pip install 'veil[hsm]'",
        ) from None
    return pkcs11


class Pkcs11Store:
    """An open session on the token, holding the master AES key (by handle, never by value)."""

    def __init__(self, config: Pkcs11Config, pin: str, *, create: bool = False) -> None:
        pkcs11 = _pkcs11()
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.exceptions import (
            NoSuchKey,
            NoSuchToken,
            PinIncorrect,
            PKCS11Error,
            UserAlreadyLoggedIn,
        )

        self.config = config
        self._lock = threading.Lock()  # a PKCS#11 session serves one call at a time
        where = f"token {config.token!r} (module {config.module})"
        try:
            lib = pkcs11.lib(config.module)
        except PKCS11Error as err:
            raise OperationalError(
                f"cannot load the PKCS#11 module {config.module}: {err}"
            ) from None
        try:
            token = lib.get_token(token_label=config.token)
        except NoSuchToken:
            raise OperationalError(f"no PKCS#11 {where}") from None
        except PKCS11Error as err:
            raise OperationalError(f"cannot find {where}: {type(err).__name__}") from None
        # read-write: the rollback counter is a token object
        try:
            self._session = token.open(user_pin=pin, rw=True)
        except PinIncorrect:
            raise OperationalError(f"wrong PIN for {where}") from None
        except UserAlreadyLoggedIn:
            # a login belongs to the process, not the session (`veil cas serve` checks the
            # PIN before uvicorn builds the app in the same process): join it
            self._session = token.open(rw=True)
        except PKCS11Error as err:
            # the exception text could only come from the module, but say nothing PIN-shaped
            raise OperationalError(f"cannot log in to {where}: {type(err).__name__}") from None
        try:
            self._key = self._session.get_key(
                key_type=KeyType.AES, object_class=ObjectClass.SECRET_KEY, label=config.key_label
            )
        except NoSuchKey:
            if not create:
                raise OperationalError(
                    f"no AES key labelled {config.key_label!r} in {where}",
                    hint="run `veil cas init --pkcs11-...` against this token",
                ) from None
            self._key = self._session.generate_key(
                KeyType.AES,
                256,
                label=config.key_label,
                store=True,  # a token object: it outlives this session
                template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,  # the key never leaves the token
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                },
            )
        except PKCS11Error as err:
            raise OperationalError(
                f"cannot use the master key in {where}: {type(err).__name__}"
            ) from None

    def _gcm(self, nonce: bytes) -> Any:
        from pkcs11.mechanisms import GCMParams

        return GCMParams(nonce, _AAD, 128)

    def seal(self, data: bytes) -> bytes:
        """AES-256-GCM in the token; the nonce comes from the token's RNG."""
        from pkcs11 import Mechanism

        with self._lock:
            nonce = bytes(self._session.generate_random(_NONCE * 8))
            ct = self._key.encrypt(
                data, mechanism=Mechanism.AES_GCM, mechanism_param=self._gcm(nonce)
            )
        return nonce + bytes(ct)

    def unseal(self, blob: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error

        try:
            with self._lock:
                out = self._key.decrypt(
                    blob[_NONCE:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=self._gcm(blob[:_NONCE]),
                )
        except PKCS11Error:
            raise OperationalError(
                f"the sealed master secret does not open with key {self.config.key_label!r} "
                f"of token {self.config.token!r} (another token or key, or a damaged file)"
            ) from None
        return bytes(out)

    def random(self, n: int) -> bytes:
        """n bytes from the token's random number generator."""
        with self._lock:
            return bytes(self._session.generate_random(n * 8))

    def read_data(self, label: str) -> list[bytes]:
        """The values of the private data objects labelled `label`."""
        from pkcs11 import Attribute, ObjectClass

        with self._lock:
            found = self._session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label}
            )
            return [bytes(obj[Attribute.VALUE]) for obj in found]

    def replace_data(self, label: str, value: bytes) -> None:
        """Make a private token data object `label` holding `value`, then destroy the older
        ones (tokens such as SoftHSM do not let a data object's value change; a crash in
        between leaves both, and readers take the largest)."""
        from pkcs11 import Attribute, ObjectClass

        with self._lock:
            old = list(
                self._session.get_objects(
                    {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label}
                )
            )
            self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.LABEL: label,
                    Attribute.APPLICATION: "veil-cas",
                    Attribute.TOKEN: True,  # outlives the session
                    Attribute.PRIVATE: True,  # needs the PIN to read or change
                    Attribute.VALUE: value,
                }
            )
            for obj in old:
                obj.destroy()

    def close(self) -> None:
        with self._lock:
            self._session.close()


class TokenCounter:
    """The rollback high-water mark (`veil.cas.integrity.Counter`) as a private data object
    in the token that holds the master key: out of reach of whoever holds the state dir and
    the database but not the PIN. Workers raise it under `flock` on a file beside it."""

    def __init__(self, store: Pkcs11Store, label: str, lock_path: Path) -> None:
        self.store = store
        self.label = label
        self._lock_path = lock_path

    def load(self) -> int:
        return max((int.from_bytes(v, "big") for v in self.store.read_data(self.label)), default=0)

    def raise_to(self, value: int) -> int:
        import fcntl

        fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stored = self.load()
            if value > stored:
                self.store.replace_data(self.label, value.to_bytes(8, "big"))
                stored = value
            return stored
        finally:
            os.close(fd)


def init_pkcs11(root: Path, config: Pkcs11Config, pin: str, size: int) -> None:
    """Generate (or reuse) the token key; seal a fresh master secret from the token's RNG."""
    store = Pkcs11Store(config, pin, create=True)
    try:
        master = store.random(size)
        atomic_write_bytes(root / SEALED_NAME, store.seal(master), 0o600)
    finally:
        store.close()
    save_config(root, config)


def open_master(root: Path, pin_file: Path | None = None) -> tuple[bytes, Pkcs11Store]:
    """(master secret, the open token) of a PKCS#11 state; the session stays open for the RNG
    and the rollback counter."""
    config = load_config(root)
    if config is None:
        raise OperationalError(f"{root} does not use a PKCS#11 token")
    store = Pkcs11Store(config, read_pin(config, pin_file))
    try:
        blob = (root / SEALED_NAME).read_bytes()
    except FileNotFoundError:
        store.close()
        raise UserError(
            f"{root / SEALED_NAME} is missing", hint="run `veil cas init --pkcs11-...` first"
        ) from None
    return store.unseal(blob), store
