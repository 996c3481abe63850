"""Attacks on nonces, the simulation verifier's bindings and exports, against a real CAS."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.cas.conftest import CasServer
from tests.cas.helpers import M1, M2, Launcher, session
from veil.cas.attest import _nonce_mac
from veil.cas.client import CasClient
from veil.cas.state import load_keyring
from veil.errors import UserError

pytestmark = pytest.mark.integration

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.fixture
def ns() -> str:
    return "ns-" + uuid.uuid4().hex[:10]


@pytest.fixture
def launcher(cas: CasServer) -> Iterator[Launcher]:
    with Launcher(cas.addr, cas.files.cert.read_bytes()) as lau:
        yield lau


def _reason(r: httpx.Response) -> str:
    return str(r.json()["detail"]["reason"])


def test_a_used_nonce_does_not_come_back_in_another_base64_spelling(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    alice.create_session(ns, session())
    cid = f"{ns}/hello/app"
    nonce = launcher.nonce(cid).json()["nonce"]
    assert launcher.provision(launcher.evidence(cid, M1, nonce)).status_code == 200
    # 32 bytes: the 43rd character carries 2 unused bits, so 3 other spellings decode alike
    last = B64.index(nonce[42])
    others = [nonce[:42] + B64[last ^ bits] + nonce[43:] for bits in (1, 2, 3)]
    assert all(base64.b64decode(o) == base64.b64decode(nonce) for o in others)
    for other in others:
        r = launcher.provision(launcher.evidence(cid, M1, other))
        assert r.status_code == 400 and "canonical" in _reason(r), r.text
    # and a fresh nonce in another spelling is refused as well (it is not what CAS issued)
    fresh = launcher.nonce(cid).json()["nonce"]
    spelled = fresh[:42] + B64[B64.index(fresh[42]) ^ 1] + fresh[43:]
    assert launcher.provision(launcher.evidence(cid, M1, spelled)).status_code == 400


def test_a_refused_attempt_uses_up_its_nonce(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    alice.create_session(ns, session())
    cid = f"{ns}/hello/app"
    nonce = launcher.nonce(cid).json()["nonce"]
    r = launcher.provision(launcher.evidence(cid, M2, nonce))
    assert r.status_code == 403 and "measurement" in _reason(r)
    r = launcher.provision(launcher.evidence(cid, M1, nonce))
    assert r.status_code == 403 and "already used" in _reason(r)
    # a report the verifier refuses uses it up too
    nonce = launcher.nonce(cid).json()["nonce"]
    bad = launcher.evidence(cid, M1, nonce)
    bad["report"] = base64.b64encode(b"[]").decode()
    assert launcher.provision(bad).status_code == 403
    r = launcher.provision(launcher.evidence(cid, M1, nonce))
    assert r.status_code == 403 and "already used" in _reason(r)


def test_the_simulation_report_binds_the_nonce_and_the_measurement(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    doc = session()
    doc["services"][0]["attestation"]["measurement"] = [M1, M2]
    alice.create_session(ns, doc)
    cid = f"{ns}/hello/app"
    n1 = launcher.nonce(cid).json()["nonce"]
    n2 = launcher.nonce(cid).json()["nonce"]
    ev = launcher.evidence(cid, M1, n1)
    ev["report"] = launcher.evidence(cid, M1, n2)["report"]  # a report made for another nonce
    r = launcher.provision(ev)
    assert r.status_code == 403 and "not bound to this nonce" in _reason(r)
    n3 = launcher.nonce(cid).json()["nonce"]
    ev = launcher.evidence(cid, M1, n3)
    ev["report"] = launcher.evidence(cid, M2, n3)["report"]  # the report claims another program
    r = launcher.provision(ev)
    assert r.status_code == 403 and "measurement differs" in _reason(r)


def test_an_expired_nonce_is_refused(
    cas: CasServer, alice: CasClient, launcher: Launcher, ns: str
) -> None:
    alice.create_session(ns, session())
    cid = f"{ns}/hello/app"
    keys: Any = SimpleNamespace(keys=load_keyring(cas.files))  # this CAS's own nonce key

    def nonce(expires: int, fill: bytes) -> str:
        body = struct.pack(">I", expires) + fill * 12
        return base64.b64encode(body + _nonce_mac(keys, cid, body)).decode()

    for age in (2, 3600):
        r = launcher.provision(launcher.evidence(cid, M1, nonce(int(time.time()) - age, b"\x07")))
        assert r.status_code == 403 and "expired" in _reason(r), r.text
    # control: the same construction with a future expiry is accepted
    fresh = nonce(int(time.time()) + 30, bytes([age % 256]))
    assert launcher.provision(launcher.evidence(cid, M1, fresh)).status_code == 200


def _exporter(target_ns: str) -> dict[str, object]:
    return session(
        secrets=[
            {
                "name": "password",
                "kind": "ascii",
                "size": 10,
                "export": [{"session": "app", "namespace": target_ns}],
            }
        ]
    )


def _importer(source: str) -> dict[str, object]:
    imported = {"name": "password", "import": {"session": source, "secret": "password"}}
    return session(name="app", secrets=[imported])


def test_an_export_to_an_unowned_namespace_cannot_be_squatted(
    cas: CasServer, alice: CasClient, bob: CasClient, launcher: Launcher, ns: str
) -> None:
    squat = ns + "-squat"
    alice.create_session(ns, _exporter(squat))
    with pytest.raises(UserError, match="422") as claimed:
        bob.create_session(squat, _importer(f"{ns}/hello"))
    # the same answer as for a session that does not exist: nothing learnt about alice's
    with pytest.raises(UserError, match="422") as missing:
        bob.create_session(squat, _importer(f"{ns}/nosuch"))
    assert str(claimed.value).replace("hello", "X") == str(missing.value).replace("nosuch", "X")
    assert "does not export" in str(claimed.value)
    # control: the exporter's own identity may create that namespace and gets the secret
    alice.create_session(squat, _importer(f"{ns}/hello"))
    got = launcher.attest(f"{squat}/app/app").json()["env"]["API_PASSWORD"]
    assert got == launcher.attest(f"{ns}/hello/app").json()["env"]["API_PASSWORD"]


def test_an_export_to_a_namespace_of_another_client_binds_to_that_client(
    cas: CasServer, alice: CasClient, bob: CasClient, launcher: Launcher, ns: str, tmp_path: Path
) -> None:
    theirs = ns + "-bob"
    bob.create_session(theirs, session(name="other"))  # bob owns the namespace first
    alice.create_session(ns, _exporter(theirs))
    bob.create_session(theirs, _importer(f"{ns}/hello"))
    r = launcher.attest(f"{theirs}/app/app")
    assert r.status_code == 200, r.text
    assert json.dumps(r.json()).count("API_PASSWORD") == 1
