"""CAS with its master key in a real PKCS#11 token (SoftHSM 2), and `external` secrets."""

from __future__ import annotations

import base64
import glob
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cas.conftest import REPO, CasServer
from tests.cas.helpers import M1, M2, Launcher, session
from veil.cas import keystore
from veil.cas.secrets import generate
from veil.cas.state import CasFiles, _derive, init_state
from veil.errors import UserError
from veil.session.model import SecretDef

pytestmark = pytest.mark.integration

MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    *glob.glob("/usr/lib/*/softhsm/libsofthsm2.so"),
)


@dataclass
class Token:
    module: str
    label: str
    pin_file: Path
    pin: str
    conf: Path

    def config(self) -> keystore.Pkcs11Config:
        return keystore.Pkcs11Config(self.module, self.label, pin_file=str(self.pin_file))


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    """A fresh SoftHSM token in a temp dir (SOFTHSM2_CONF names it for CAS and this process)."""
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if os.path.exists(m)), None)
    if util is None or module is None:
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2)")
    pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed (pip install veil[hsm])")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    label = "veil-test"
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            secrets.token_hex(8),
        ],
        check=True,
        capture_output=True,
    )
    pin_file = root / "pin"
    pin_file.write_text(pin + "\n")
    yield Token(os.path.realpath(module), label, pin_file, pin, conf)
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture(scope="session")
def hsm_files(token: Token, tmp_path_factory: pytest.TempPathFactory) -> CasFiles:
    root = tmp_path_factory.mktemp("cas-hsm") / "state"
    return init_state(root, ["127.0.0.1"], pkcs11=token.config(), pin=token.pin)


def _doc(name: str) -> dict[str, Any]:
    doc = session(name)
    doc["secrets"] = [
        {"name": "password", "kind": "ascii", "size": 10},
        {"name": "tk", "kind": "binary", "size": 24, "external": True},
        {"name": "pk", "kind": "private-key", "key_type": "P-384", "external": True},
        {"name": "word", "kind": "ascii", "size": 16, "external": True},
    ]
    doc["services"][0]["environment"] = {
        "API_PASSWORD": "$$SCONE::password$$",
        "TK": "$$SCONE::tk:hex$$",
        "PK": "$$SCONE::pk$$",
        "WORD": "$$SCONE::word$$",
    }
    return doc


def _provision(server: CasServer, config_id: str) -> dict[str, str]:
    launcher = Launcher(server.addr, server.files.cert.read_bytes())
    try:
        r = launcher.attest(config_id)
    finally:
        launcher.close()
    assert r.status_code == 200, r.text
    env: dict[str, str] = r.json()["env"]
    return env


def test_secrets_survive_a_restart_with_the_token(
    hsm_files: CasFiles, cas_factory: Callable[..., CasServer], tmp_path: Path
) -> None:
    ns = "hsm-" + uuid.uuid4().hex[:8]
    server = cas_factory(files=hsm_files)
    with server.client(tmp_path / "alice") as alice:
        alice.create_session(ns, _doc("hello"))
    first = _provision(server, f"{ns}/hello/app")
    assert len(bytes.fromhex(first["TK"])) == 24
    assert len(first["WORD"]) == 16 and len(first["API_PASSWORD"]) == 10
    key = serialization.load_pem_private_key(first["PK"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"

    server.stop()
    again = cas_factory(files=hsm_files)
    assert again.key == server.key
    assert _provision(again, f"{ns}/hello/app") == first
    again.stop()


def _occurs(needle: bytes, root: Path) -> list[str]:
    forms = (needle, needle.hex().encode(), base64.b64encode(needle))
    return [
        str(p) for p in root.rglob("*") if p.is_file() and any(f in p.read_bytes() for f in forms)
    ]


def test_state_and_database_hold_no_master_key_material(
    hsm_files: CasFiles, cas_factory: Callable[..., CasServer], tmp_path: Path, token: Token
) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    ns = "disk-" + uuid.uuid4().hex[:8]
    server = cas_factory(files=hsm_files)
    with server.client(tmp_path / "alice") as alice:
        alice.create_session(ns, _doc("disk"))
    _provision(server, f"{ns}/disk/app")
    server.stop()  # checkpoint the WAL into cas.db

    assert not hsm_files.master_key.exists()
    store = keystore.Pkcs11Store(token.config(), token.pin)
    master = store.unseal(hsm_files.sealed_master.read_bytes())
    store.close()
    derived = [_derive(master, f"veil-cas {p} v1") for p in ("seal", "nonce", "audit")]
    for secret in (master, *derived):
        assert _occurs(secret, hsm_files.root) == []
    # the scan finds a key where there is one: a file key store's master.key
    plain = init_state(tmp_path / "plain", ["127.0.0.1"])
    assert _occurs(plain.master_key.read_bytes(), plain.root) == [str(plain.master_key)]

    # the token's key is marked sensitive and non-extractable: its value cannot be read
    tok = pkcs11.lib(token.module).get_token(token_label=token.label)
    with tok.open(user_pin=token.pin) as s:
        k = s.get_key(
            key_type=KeyType.AES, object_class=ObjectClass.SECRET_KEY, label="veil-cas-master"
        )
        assert k[Attribute.EXTRACTABLE] is False and k[Attribute.SENSITIVE] is True
        with pytest.raises(AttributeSensitive):
            k[Attribute.VALUE]


def _veil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veil", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_wrong_pin_missing_token_or_module_are_clear_errors(
    hsm_files: CasFiles, token: Token, tmp_path: Path
) -> None:
    bad = "wrong" + secrets.token_hex(4)
    r = _veil(
        "cas",
        "serve",
        "--state-dir",
        str(hsm_files.root),
        "--listen",
        "127.0.0.1:1",
        env={keystore.PIN_ENV: bad},
    )
    assert r.returncode == 1, r.stderr
    assert "wrong PIN for token 'veil-test'" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and bad not in r.stderr + r.stdout

    bad_file = tmp_path / "bad-pin"
    bad_file.write_text(bad)
    state = str(tmp_path / "s")
    r = _veil(
        "cas",
        "init",
        "--state-dir",
        state,
        "--pkcs11-module",
        token.module,
        "--pkcs11-token",
        "no-such-token",
        "--pkcs11-pin-file",
        str(token.pin_file),
    )
    assert r.returncode == 1 and "no PKCS#11 token 'no-such-token'" in r.stderr
    r = _veil(
        "cas",
        "init",
        "--state-dir",
        state,
        "--pkcs11-module",
        token.module,
        "--pkcs11-token",
        token.label,
        "--pkcs11-pin-file",
        str(bad_file),
    )
    assert r.returncode == 1 and "wrong PIN" in r.stderr and bad not in r.stderr
    assert not any(Path(state).glob("*")), "a failed init leaves nothing behind"
    r = _veil(
        "cas",
        "init",
        "--state-dir",
        state,
        "--pkcs11-module",
        str(tmp_path / "nope.so"),
        "--pkcs11-token",
        token.label,
        "--pkcs11-pin-file",
        str(token.pin_file),
    )
    assert r.returncode == 2 and "no such file" in r.stderr
    assert "Traceback" not in r.stderr


def test_init_records_the_token_and_not_the_pin(hsm_files: CasFiles, token: Token) -> None:
    cfg = hsm_files.keystore_config.read_text()
    assert token.label in cfg and token.pin not in cfg
    assert keystore.load_config(hsm_files.root) == token.config()
    # init again: same key store, nothing changes; another token needs --force
    again = init_state(hsm_files.root, ["127.0.0.1"], pkcs11=token.config(), pin=token.pin)
    assert again.public_key_b64() == hsm_files.public_key_b64()
    other = keystore.Pkcs11Config(token.module, "other-token")
    with pytest.raises(UserError, match="another key store"):
        init_state(hsm_files.root, ["127.0.0.1"], pkcs11=other, pin=token.pin)


def test_external_secrets_need_a_token_and_a_generated_kind(
    cas: CasServer, hsm_files: CasFiles, cas_factory: Callable[..., CasServer], tmp_path: Path
) -> None:
    ns = "ext-" + uuid.uuid4().hex[:8]
    with cas.client(tmp_path / "a") as alice, pytest.raises(UserError, match="no PKCS#11 token"):
        alice.create_session(ns, _doc("nope"))
    server = cas_factory(files=hsm_files)
    rsa = session("rsa")
    rsa["secrets"] = [
        {"name": "password", "kind": "ascii"},
        {"name": "k", "kind": "private-key", "key_type": "RSA", "external": True},
    ]
    explicit = session("explicit")
    explicit["secrets"] = [{"name": "password", "kind": "explicit", "value": "x", "external": True}]
    with server.client(tmp_path / "b") as bob:
        with pytest.raises(UserError, match="not RSA"):
            bob.create_session(ns, rsa)
        with pytest.raises(UserError, match="external secret is generated"):
            bob.create_session(ns, explicit)
    server.stop()


def test_external_secrets_draw_on_the_given_generator() -> None:
    """The token's generator, not the OS's: the same bytes give the same secrets."""

    def counter() -> Callable[[int], bytes]:
        state = {"i": 0}

        def rng(n: int) -> bytes:
            out = bytes((state["i"] + k) % 256 for k in range(n))
            state["i"] += n
            return out

        return rng

    defs = [
        SecretDef(name="a", kind="ascii", size=30, external=True),
        SecretDef(name="b", kind="binary", size=16, external=True),
        SecretDef(name="c", kind="private-key", key_type="Ed25519", external=True),
        SecretDef(name="d", kind="private-key", external=True),
    ]
    one = [generate(d, {}, counter()).to_json() for d in defs]
    two = [generate(d, {}, counter()).to_json() for d in defs]
    assert one == two
    assert generate(defs[1], {}, counter()).raw == bytes(range(16))
    # not external: the OS generator, whatever rng is given
    plain = SecretDef(name="e", kind="binary", size=16)
    assert generate(plain, {}, counter()).raw != generate(plain, {}, counter()).raw


def test_the_rollback_counter_lives_in_the_token(
    token: Token, cas_factory: Callable[..., CasServer], tmp_path: Path
) -> None:
    """A rollback of the database and the state dir together is still detected: the
    high-water mark is a private object of the token, out of reach without the PIN."""
    files = init_state(tmp_path / "state", ["127.0.0.1"], pkcs11=token.config(), pin=token.pin)
    server = cas_factory(files=files)
    doc = session()
    doc["services"][0]["attestation"]["measurement"] = [M1, M2]
    with server.client(tmp_path / "alice") as alice:
        v1 = alice.create_session("shop", doc)
        db = files.root / "cas.db"
        with sqlite3.connect(db) as src, sqlite3.connect(tmp_path / "backup.db") as dst:
            src.backup(dst)
        alice.update_session("shop", session(predecessor=v1["hash"]))  # M2 revoked
    server.stop()
    assert not files.counter.exists()  # nothing in the state dir to roll back with it
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.db", db)
    again = cas_factory(files=files)
    with Launcher(again.addr, files.cert.read_bytes()) as launcher:
        r = launcher.attest("shop/hello/app", M2)
    assert r.status_code == 500 and "rolled back" in r.json()["detail"]["reason"], r.text
    again.stop()
