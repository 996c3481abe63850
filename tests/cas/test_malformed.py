"""Malformed requests against the real CAS: each gets a 4xx whose reason says what is wrong,
never a 500, and CAS keeps serving afterwards."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.cas.conftest import CasServer
from tests.cas.helpers import Launcher, session
from veil.cas.client import CasClient
from veil.cas.http_errors import MAX_BODY


def _reason(r: httpx.Response) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, dict), r.text
    return str(detail["reason"])


@pytest.fixture
def http(alice: CasClient) -> httpx.Client:
    return alice.http()


def test_huge_body_is_refused_before_it_is_read(http: httpx.Client) -> None:
    big = b'{"name": "' + b"x" * (MAX_BODY + 1) + b'"}'
    r = http.post("/v1/namespaces/big/sessions", content=big,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than CAS accepts (8 MiB)" in _reason(r)

    # without a Content-Length (chunked), the limit applies while the body streams in
    def chunks() -> Any:
        for _ in range(MAX_BODY // (1 << 20) + 2):
            yield b" " * (1 << 20)

    r = http.post("/v1/namespaces/big/sessions", content=chunks(),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than CAS accepts" in _reason(r)
    assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_bodies_must_be_json(http: httpx.Client, ctype: str | None) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    r = http.post("/v1/attestation/nonce", content=b'{"config_id": "a/b/c"}', headers=headers)
    assert r.status_code == 415
    assert _reason(r) == f"the body must be application/json, not {ctype or 'untyped'}"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"config_id": "a/b/\xff\xfe"}', "not valid JSON"),  # invalid UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nested deeper than any parser
        (b'{"config_id": ', "JSON decode error"),  # truncated
        (b"[]", "Input should be a valid dictionary"),
    ],
)
def test_unparseable_bodies(http: httpx.Client, body: bytes, why: str) -> None:
    for path in ("/v1/attestation/nonce", "/v1/namespaces/ns/sessions"):
        r = http.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422), (path, r.status_code, r.text[:200])
        assert why in _reason(r)


def test_deep_but_parseable_session_document_is_a_validation_error(http: httpx.Client) -> None:
    doc: Any = "leaf"
    for _ in range(500):
        doc = {"a": doc}
    r = http.post("/v1/namespaces/deep/sessions", json={**session("deep"), "extra": doc})
    assert r.status_code == 422 and "extra" in _reason(r)


@pytest.mark.parametrize(
    ("path", "status", "why"),
    [
        # `/` splits the path
        ("/v1/namespaces/a%2Fb/sessions/s", 404, "no endpoint GET '/v1/namespaces/a/b/sessions/s'"),
        ("/v1/namespaces/%2E%2E%2F%2E%2E/sessions/s", 404, "no endpoint GET"),
        ("/v1/namespaces/ns%00x/sessions/s", 422, "path.namespace: String should match"),
        ("/v1/namespaces/ns/sessions/%2E%2E", 422, "path.name: String should match"),
        ("/v1/namespaces/n%C3%A4me/sessions/s", 422, "path.namespace: String should match"),
        ("/v1/namespaces/ns/sessions/" + "x" * 201, 422, "at most 200 characters"),
    ],
)
def test_odd_names_in_paths(http: httpx.Client, path: str, status: int, why: str) -> None:
    r = http.get(path)
    assert r.status_code == status, r.text
    assert why in _reason(r)


@pytest.mark.parametrize("config_id", ["a/b", "a/b/c/d", "../b/c", "a/b/\u0000", "a/b/ü", "a//c"])
def test_odd_config_ids(cas: CasServer, config_id: str) -> None:
    launcher = Launcher(cas.addr, cas.files.cert.read_bytes())
    try:
        r = launcher.nonce(config_id)
        assert r.status_code == 422 and "body.config_id: String should match" in _reason(r)
        ev = launcher.evidence(config_id, "1" * 64, "AAAA")
        r = launcher.provision(ev)
        assert r.status_code == 422 and "body.config_id" in _reason(r)
    finally:
        launcher.close()


def test_evidence_fields_that_are_not_base64(cas: CasServer) -> None:
    launcher = Launcher(cas.addr, cas.files.cert.read_bytes())
    try:
        ev = launcher.evidence("a/b/c", "1" * 64, "AAAA")
        for field, value in [("nonce", "n\u00f6nce"), ("report", "r\u00e9port"),
                             ("platform", "SEV\u0000")]:
            r = launcher.provision({**ev, field: value})
            assert r.status_code == 422, r.text
            assert f"body.{field}: String should match" in _reason(r)
            assert value not in r.text  # reasons never echo what was sent
    finally:
        launcher.close()


def test_session_names_in_documents(http: httpx.Client) -> None:
    for bad in ("../x", "a/b", "x\u0000", "ünï", ""):
        r = http.post("/v1/namespaces/names/sessions", json=session(bad))
        assert r.status_code == 422 and "name" in _reason(r), r.text


def test_session_with_ten_thousand_secrets(alice: CasClient, cas: CasServer) -> None:
    n = 10_000
    doc = session("many")
    doc["secrets"] = doc["secrets"] + [
        {"name": f"s{i}", "kind": "ascii", "size": 8} for i in range(n)
    ]
    started = time.monotonic()
    written = alice.create_session("many", doc)
    assert written["version"] == 1
    assert time.monotonic() - started < 60
    read = alice.read_session("many", "many")
    assert len(read["session"]["secrets"]) == n + 1
    assert sorted(s["name"] for s in read["session"]["secrets"])[-1] == "s9999"
    launcher = Launcher(cas.addr, cas.files.cert.read_bytes())
    try:
        assert launcher.attest("many/many/app").status_code == 200
    finally:
        launcher.close()
