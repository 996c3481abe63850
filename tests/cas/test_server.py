"""CAS over TLS on loopback: sessions, access, attestation, provisioning, malformed input."""

from __future__ import annotations

import base64
import copy
import json
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cas.conftest import CasServer
from tests.cas.helpers import M1, M2, Launcher, session
from veil.cas.client import CasClient
from veil.errors import UserError

pytestmark = pytest.mark.integration


@pytest.fixture
def ns() -> str:
    return "ns-" + uuid.uuid4().hex[:10]


@pytest.fixture
def launcher(cas: CasServer) -> Iterator[Launcher]:
    lau = Launcher(cas.addr, cas.files.cert.read_bytes())
    yield lau
    lau.close()


def test_create_read_history_and_hash_chain(alice: CasClient, ns: str) -> None:
    out = alice.create_session(ns, session())
    assert out["version"] == 1
    read = alice.read_session(ns, "hello")
    assert read["hash"] == out["hash"]
    assert read["session"]["services"][0]["environment"]["API_PASSWORD"] == "$$SCONE::password$$"
    doc2 = session(predecessor=out["hash"])
    doc2["services"][0]["environment"]["API_USER"] = "someone"
    out2 = alice.update_session(ns, doc2)
    assert out2["version"] == 2 and out2["hash"] != out["hash"]
    hist = alice.history(ns, "hello")
    assert [h["version"] for h in hist] == [1, 2]
    assert hist[1]["predecessor"] == hist[0]["hash"]


def test_create_twice_and_stale_predecessor_are_409(alice: CasClient, ns: str) -> None:
    out = alice.create_session(ns, session())
    with pytest.raises(UserError, match="409"):
        alice.create_session(ns, session())
    with pytest.raises(UserError, match="409"):
        alice.update_session(ns, session(predecessor="0" * 64))
    with pytest.raises(UserError, match="422"):
        alice.create_session(ns, session(name="other", predecessor=out["hash"]))


def test_other_client_gets_403_and_namespaces_isolate(
    alice: CasClient, bob: CasClient, ns: str
) -> None:
    out = alice.create_session(ns, session())
    assert alice.identity() != bob.identity()
    with pytest.raises(UserError, match="403"):
        bob.read_session(ns, "hello")
    with pytest.raises(UserError, match="403"):
        bob.update_session(ns, session(predecessor=out["hash"]))
    with pytest.raises(UserError, match="403"):
        bob.create_session(ns, session(name="intruder"))
    # bob's own namespace is his
    bob.create_session(ns + "-bob", session())
    with pytest.raises(UserError, match="403"):
        alice.read_session(ns + "-bob", "hello")


def test_access_policy_names_another_reader(alice: CasClient, bob: CasClient, ns: str) -> None:
    doc = session(access_policy={"read": ["CREATOR", bob.identity()], "update": ["CREATOR"]})
    out = alice.create_session(ns, doc)
    assert bob.read_session(ns, "hello")["hash"] == out["hash"]
    with pytest.raises(UserError, match="403"):
        bob.update_session(ns, {**doc, "predecessor": out["hash"]})


def test_concurrent_updates_with_one_predecessor_exactly_one_wins(
    cas: CasServer, alice: CasClient, ns: str
) -> None:
    out = alice.create_session(ns, session())

    def attempt(i: int) -> int:
        doc = session(predecessor=out["hash"])
        doc["services"][0]["environment"]["API_USER"] = f"user{i}"
        with cas.client(alice.identity_dir) as c:
            try:
                c.update_session(ns, doc)
                return 200
            except UserError as err:
                assert "409" in str(err), str(err)
                return 409

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count(200) == 1 and results.count(409) == 7
    assert [h["version"] for h in alice.history(ns, "hello")] == [1, 2]


def test_provision_substitutes_secrets_everywhere(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    alice.create_session(ns, session())
    r = launcher.attest(f"{ns}/hello/app")
    assert r.status_code == 200, r.text
    conf = r.json()
    pw = conf["env"]["API_PASSWORD"]
    assert len(pw) == 10 and "$$" not in pw and pw.isalnum()
    assert conf["argv"] == ["python3", "print_env.py", "--pw", pw]
    assert conf["pwd"] == "/python"
    (f,) = conf["files"]
    assert (f["path"], f["mode"]) == ("/etc/app.conf", "0640")
    assert base64.b64decode(f["content"]).decode() == f"pw={pw}"


def test_secrets_stay_across_updates_unless_definition_changes(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    out = alice.create_session(ns, session())
    pw1 = launcher.attest(f"{ns}/hello/app").json()["env"]["API_PASSWORD"]
    doc = session(predecessor=out["hash"])
    doc["services"][0]["environment"]["API_USER"] = "changed"
    out = alice.update_session(ns, doc)
    pw2 = launcher.attest(f"{ns}/hello/app").json()["env"]["API_PASSWORD"]
    assert pw1 == pw2
    doc = session(predecessor=out["hash"])
    doc["secrets"][0]["size"] = 12
    alice.update_session(ns, doc)
    pw3 = launcher.attest(f"{ns}/hello/app").json()["env"]["API_PASSWORD"]
    assert len(pw3) == 12 and pw3 != pw1


def test_refusals_have_reasons(alice: CasClient, launcher: Launcher, ns: str) -> None:
    alice.create_session(ns, session())
    cid = f"{ns}/hello/app"
    r = launcher.attest(cid, measurement=M2)
    assert r.status_code == 403
    assert r.json()["detail"]["reason"].startswith("measurement does not match")
    r = launcher.nonce(f"{ns}/hello/nosuchservice")
    assert r.status_code == 404 and "unknown config id" in r.json()["detail"]["reason"]
    nonce = launcher.nonce(cid).json()["nonce"]
    ev = launcher.evidence(cid, M1, nonce)
    assert launcher.provision(ev).status_code == 200
    replay = launcher.provision(ev)
    assert replay.status_code == 403 and "already used" in replay.json()["detail"]["reason"]
    # a nonce issued for another config id does not transfer
    alice.create_session(ns, session(name="second"))
    other = launcher.nonce(f"{ns}/second/app").json()["nonce"]
    r = launcher.provision(launcher.evidence(cid, M1, other))
    assert r.status_code == 403 and "not issued" in r.json()["detail"]["reason"]
    # forged nonce
    forged = base64.b64encode(b"\xff" * 32).decode()
    assert launcher.provision(launcher.evidence(cid, M1, forged)).status_code == 403
    # unknown platform
    ev = launcher.evidence(cid, M1, launcher.nonce(cid).json()["nonce"])
    ev["platform"] = "nitro"
    r = launcher.provision(ev)
    assert r.status_code == 403 and "no verifier for platform 'nitro'" in r.text
    assert "sev-snp, sgx-dcap, simulation, tdx" in r.text


def test_production_session_refuses_simulation(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    alice.create_session(ns, session(mode="production"))
    r = launcher.attest(f"{ns}/hello/app")
    assert r.status_code == 403
    assert r.json()["detail"]["reason"] == "simulation evidence is not accepted in production mode"
    doc = session(name="tolerant", mode="production")
    doc["security"]["attestation"]["tolerate"] = ["debug-mode"]
    alice.create_session(ns, doc)
    assert launcher.attest(f"{ns}/tolerant/app").status_code == 200


def test_x509_chain_keys_and_formats(alice: CasClient, launcher: Launcher, ns: str) -> None:
    from cryptography import x509

    doc = session()
    doc["secrets"] += [
        {"name": "ca", "kind": "x509-ca", "common_name": "Test CA"},
        {"name": "srvkey", "kind": "private-key", "key_type": "P-384"},
        {
            "name": "srv",
            "kind": "x509",
            "issuer": "ca",
            "private_key": "srvkey",
            "dns": ["api.example", "127.0.0.1"],
            "valid_for": "30d",
        },
        {"name": "blob", "kind": "binary", "size": 16},
        {"name": "given", "kind": "explicit", "value": "s3cr3t-given"},
    ]
    doc["images"][0]["injection_files"] += [
        {"path": "/tls/crt", "content": "$$SCONE::srv.crt$$"},
        {"path": "/tls/key", "content": "$$SCONE::srv:privatekey$$"},
        {"path": "/tls/chain", "content": "$$SCONE::srv:chain$$"},
        {"path": "/tls/k2", "content": "$$SCONE::srvkey$$"},
    ]
    doc["services"][0]["environment"].update(
        {"HEX": "$$SCONE::blob:hex$$", "B64": "$$SCONE::blob:base64$$", "GIVEN": "$$SCONE::given$$"}
    )
    alice.create_session(ns, doc)
    conf = launcher.attest(f"{ns}/hello/app").json()
    files = {f["path"]: base64.b64decode(f["content"]) for f in conf["files"]}
    crt = x509.load_pem_x509_certificate(files["/tls/crt"])
    ca = x509.load_pem_x509_certificate(files["/tls/chain"])
    crt.verify_directly_issued_by(ca)
    sans = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "api.example" in sans.get_values_for_type(x509.DNSName)
    assert files["/tls/key"] == files["/tls/k2"] and b"PRIVATE KEY" in files["/tls/key"]
    assert bytes.fromhex(conf["env"]["HEX"]) == base64.b64decode(conf["env"]["B64"])
    assert len(bytes.fromhex(conf["env"]["HEX"])) == 16
    assert conf["env"]["GIVEN"] == "s3cr3t-given"
    # no API returns a secret value
    read = alice.read_session(ns, "hello")
    assert "s3cr3t-given" not in str(read)


def test_export_and_import_only_as_allowed(alice: CasClient, launcher: Launcher, ns: str) -> None:
    exporter = session(name="db")
    exporter["secrets"][0]["export"] = [{"session": "app", "namespace": ns + "-b"}]
    alice.create_session(ns, exporter)
    importer = session(name="app")
    importer["secrets"] = [{"name": "password", "import": {"session": f"{ns}/db"}}]
    alice.create_session(ns + "-b", importer)
    a = launcher.attest(f"{ns}/db/app").json()["env"]["API_PASSWORD"]
    b = launcher.attest(f"{ns}-b/app/app").json()["env"]["API_PASSWORD"]
    assert a == b
    thief = session(name="thief")
    thief["secrets"] = [{"name": "password", "import": {"session": f"{ns}/db"}}]
    with pytest.raises(UserError, match="does not export"):
        alice.create_session(ns + "-b", thief)


def test_invalid_session_reports_every_problem(alice: CasClient, ns: str) -> None:
    doc = session()
    doc["secrets"].append({"name": "c", "kind": "x509", "issuer": "nope"})
    doc["images"][0]["injection_files"][0]["content"] = "$$SCONE::missing$$"
    with pytest.raises(UserError) as err:
        alice.create_session(ns, doc)
    assert "422" in str(err.value) and "nope" in str(err.value) and "missing" in str(err.value)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/v1/attestation/nonce", b"{not json"),
        ("POST", "/v1/attestation/nonce", b"[]"),
        ("POST", "/v1/attestation/nonce", b'{"config_id": 5}'),
        ("POST", "/v1/attestation/nonce", b'{"config_id": "a/b"}'),
        ("POST", "/v1/attestation/provision", b'{"config_id": "a/b/c"}'),
        (
            "POST",
            "/v1/attestation/provision",
            b'{"config_id":"a/b/c","measurement":"zz","nonce":"x","platform":"p","report":"r"}',
        ),
        (
            "POST",
            "/v1/attestation/provision",
            b'{"config_id":"a/b/c","measurement":"'
            + b"1" * 64
            + b'","nonce":"!!","platform":"simulation","report":"r"}',
        ),
        ("POST", "/v1/clients", b'{"csr": "not a csr"}'),
        ("POST", "/v1/namespaces/x/sessions", b'{"name": 1}'),
        ("POST", "/v1/namespaces/bad%20ns/sessions", b"{}"),
        ("GET", "/v1/namespaces/x/sessions/y", b""),
        ("PUT", "/v1/namespaces/x/sessions/y", b"[1,2]"),
    ],
)
def test_malformed_requests_get_4xx(
    cas: CasServer, launcher: Launcher, method: str, path: str, body: bytes
) -> None:
    r = launcher.http.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text)


def test_openapi_is_published(launcher: Launcher) -> None:
    spec = launcher.http.get("/openapi.json").json()
    assert "/v1/attestation/provision" in spec["paths"]
    assert "/v1/namespaces/{namespace}/sessions" in spec["paths"]


def test_wrong_pinned_key_is_refused(cas: CasServer, tmp_path: Path) -> None:
    from veil.cas import pki
    from veil.errors import OperationalError

    other = pki.spki_b64(pki.new_ec_key().public_key())
    with (
        CasClient(cas.addr, other, identity_dir=tmp_path / "x") as c,
        pytest.raises(OperationalError, match="pinned"),
    ):
        c.read_session("x", "y")


def test_request_without_client_cert_has_no_identity(launcher: Launcher, cas: CasServer) -> None:
    r = launcher.http.post("/v1/namespaces/anon/sessions", json=copy.deepcopy(session()))
    assert r.status_code == 401
    assert isinstance(httpx.Response, type)


def test_hardware_evidence_through_cas(
    alice: CasClient, launcher: Launcher, ns: str, cas: CasServer
) -> None:
    """Real SEV-SNP and TDX evidence reaches the verifiers; its report_data was made for
    another nonce, so CAS refuses it, says why and audits the refusal."""
    data = Path(__file__).parent / "data" / "attestation"
    doc = session(mode="production")
    snp_launch = "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c"
    snp_launch += "23500644e0e692e6be917f9050d3d38c"
    doc["services"][0]["attestation"]["platforms"] = {"sev-snp": {"measurement": [snp_launch]}}
    alice.create_session(ns, doc)
    assert alice.read_session(ns, "hello")["session"]["services"][0]["attestation"][
        "platforms"
    ] == {"sev-snp": {"measurement": [snp_launch], "min_tcb": {}}}
    cid = f"{ns}/hello/app"
    report = {
        "report": base64.b64encode((data / "snp" / "test-report.bin").read_bytes()).decode(),
        "cert": base64.b64encode((data / "snp" / "test-vcek.der").read_bytes()).decode(),
    }
    ev = launcher.evidence(cid, M1, launcher.nonce(cid).json()["nonce"])
    ev.update(platform="sev-snp", report=base64.b64encode(json.dumps(report).encode()).decode())
    r = launcher.provision(ev)
    assert r.status_code == 403, r.text
    assert "report_data does not bind this nonce" in r.json()["detail"]["reason"]
    ev = launcher.evidence(cid, M1, launcher.nonce(cid).json()["nonce"])
    quote = (data / "tdx" / "tdx_quote_5.dat").read_bytes()
    ev.update(platform="tdx", report=base64.b64encode(quote).decode())
    r = launcher.provision(ev)
    assert r.status_code == 403 and "quote's report_data does not bind" in r.text
    with sqlite3.connect(cas.files.root / "cas.db") as db:
        reasons = [
            json.loads(e)["reason"]
            for (e,) in db.execute("SELECT entry FROM audit WHERE entry LIKE ?", (f"%{cid}%",))
            if json.loads(e).get("outcome") == "denied"
        ]
    assert any("report_data does not bind" in x for x in reasons), reasons
    assert any("quote's report_data" in x for x in reasons), reasons


def test_platform_policy_is_validated(alice: CasClient, ns: str) -> None:
    doc = session()
    doc["services"][0]["attestation"]["platforms"] = {
        "nitro": {"measurement": ["ab" * 48]},
        "tdx": {"measurement": ["abc"]},
    }
    with pytest.raises(UserError) as err:
        alice.create_session(ns, doc)
    text = str(err.value)
    assert "422" in text and "platforms.nitro" in text and "platforms.tdx.measurement" in text
