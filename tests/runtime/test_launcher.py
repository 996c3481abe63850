"""The launcher's pieces: the pinned key, the DER walk, files, environment, CAS answers.

The attestation itself is tested end to end against the real CAS in tests/e2e; here a small
in-test HTTPS server (a test double speaking docs/attestation-protocol.md) checks the client
side in isolation: pinning, the evidence it sends, and how refusals are reported.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port
from tests.runtime.image_root import make_image_root
from veil.runtime import launcher
from veil.runtime.der import DerError, spki_from_certificate
from veil.runtime.launcher import (
    BASE_ENV,
    LaunchError,
    Provisioned,
    program_env,
    provision,
    started_line,
)
from veil.runtime.measure import RUNTIME_PATHS, MeasurementPlan


def cert_and_key(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cas")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return tmp / "cert.pem", tmp / "key.pem", base64.b64encode(spki).decode()


class FakeCas:
    """Accepts exactly one measurement; records what the launcher sent."""

    def __init__(self, tmp: Path, expected: str, port: int = 0,
                 cert_key: tuple[Path, Path, str] | None = None, chunked: bool = False) -> None:
        cert, key, self.key_b64 = cert_key or cert_and_key(tmp)
        self.expected = expected
        self.evidence: list[dict[str, Any]] = []
        self.requests = 0
        self.connections: set[tuple[str, int]] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # chunked: HTTP/1.1, one kept-alive connection, answers in chunks (as a proxy may
            # send them); else HTTP/1.0, a connection per request
            protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"

            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                if self.path == "/v1/attestation/nonce":
                    code, doc = 200, {"nonce": "bm9uY2U=", "expires_in": 60}
                else:
                    outer.evidence.append(body)
                    if body["measurement"] == outer.expected:
                        code, doc = 200, {"env": {"API_USER": "me"}, "argv": ["true"],
                                          "pwd": "/", "files": []}
                    else:
                        code, doc = 403, {"detail": {"reason": "measurement does not match"}}
                data = json.dumps(doc).encode()
                self.send_response(code)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (data[:5], data[5:], b""):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                outer.connections.add(self.client_address)

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_root(tmp_path: Path) -> tuple[Path, str]:
    return make_image_root(tmp_path)


@pytest.fixture
def fake_cas(tmp_path: Path, image_root: tuple[Path, str]) -> Iterator[FakeCas]:
    cas = FakeCas(tmp_path, image_root[1])
    yield cas
    cas.close()


def env_for(cas: FakeCas, key: str | None = None) -> dict[str, str]:
    return {"SCONE_CONFIG_ID": "ns/s/svc", "SCONE_CAS_ADDR": cas.addr,
            "SCONE_CAS_KEY": key or cas.key_b64}


def test_spki_matches_cryptography(tmp_path: Path) -> None:
    cert_pem, _, key_b64 = cert_and_key(tmp_path)
    der = x509.load_pem_x509_certificate(cert_pem.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert spki_from_certificate(der) == base64.b64decode(key_b64)
    with pytest.raises(DerError):
        spki_from_certificate(der[:40])


def test_provision_sends_evidence_and_returns_configuration(
    image_root: tuple[Path, str], fake_cas: FakeCas
) -> None:
    root, m = image_root
    prov = provision(env_for(fake_cas), str(root))
    assert prov.env == {"API_USER": "me"} and prov.argv == ["true"]
    ev = fake_cas.evidence[0]
    assert ev["measurement"] == m and ev["nonce"] == "bm9uY2U=" and ev["platform"] == "simulation"
    report = json.loads(base64.b64decode(ev["report"]))
    assert report == {"measurement": m, "nonce": "bm9uY2U="}


def test_a_kept_alive_connection_and_chunked_answers_are_understood(
    image_root: tuple[Path, str], tmp_path: Path
) -> None:
    root, m = image_root
    cas = FakeCas(tmp_path, m, chunked=True)
    try:
        assert provision(env_for(cas), str(root)).env == {"API_USER": "me"}
        assert cas.requests == 2 and len(cas.connections) == 1
    finally:
        cas.close()


def test_refusal_carries_the_reason(image_root: tuple[Path, str], fake_cas: FakeCas) -> None:
    root, _ = image_root
    (root / "app/main.py").write_text("print('tampered')\n")
    with pytest.raises(LaunchError, match="CAS refused to configure ns/s/svc: measurement does"):
        provision(env_for(fake_cas), str(root))
    assert fake_cas.requests == 2  # a refusal by CAS is final: never asked again


def test_a_cas_that_starts_late_is_waited_for(image_root: tuple[Path, str],
                                              tmp_path: Path) -> None:
    """`veil up` may start a service before its CAS listens: a refused connection is tried
    again for a few seconds."""
    root, m = image_root
    port = free_port()
    cert_key = cert_and_key(tmp_path)
    started: list[FakeCas] = []
    timer = threading.Timer(1.0, lambda: started.append(FakeCas(tmp_path, m, port, cert_key)))
    t0 = time.monotonic()
    timer.start()
    try:
        prov = provision({"SCONE_CONFIG_ID": "ns/s/svc", "SCONE_CAS_ADDR": f"127.0.0.1:{port}",
                          "SCONE_CAS_KEY": cert_key[2]}, str(root))
        assert prov.argv == ["true"] and time.monotonic() - t0 >= 1.0
        assert started[0].evidence[0]["measurement"] == m
    finally:
        timer.cancel()
        timer.join()
        for cas in started:
            cas.close()


def test_cas_that_never_listens_is_given_up_on(image_root: tuple[Path, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "CONNECT_RETRY_SECONDS", 0.5)
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=r"cannot reach CAS at 127\.0\.0\.1:\d+: .*refused.*"
                       r"\(tried for 0\.5 s\)"):
        provision({"SCONE_CONFIG_ID": "ns/s/svc", "SCONE_CAS_ADDR": f"127.0.0.1:{free_port()}",
                   "SCONE_CAS_KEY": "AAAA"}, str(image_root[0]))
    assert 0.3 <= time.monotonic() - t0 < 3


def test_a_peer_that_fails_tls_is_not_asked_again(image_root: tuple[Path, str]) -> None:
    """Only a refused or reset connection means "not up yet"; anything else is an answer."""
    accepted = []
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                accepted.append(conn)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        port = srv.getsockname()[1]
        with pytest.raises(LaunchError, match="cannot reach CAS"):
            provision({"SCONE_CONFIG_ID": "ns/s/svc", "SCONE_CAS_ADDR": f"127.0.0.1:{port}",
                       "SCONE_CAS_KEY": "AAAA"}, str(image_root[0]))
    assert len(accepted) == 1


def test_the_success_line_names_the_attestation_and_no_secret() -> None:
    plan = MeasurementPlan(roots=["/"], command="python3 print_env.py", pwd="/app",
                           local_env={}, exclude=list(RUNTIME_PATHS))
    prov = Provisioned({"env": {"API_PASSWORD": "s3cret"}, "argv": ["python3", "print_env.py"]})
    prov.config_id, prov.platform, prov.measurement = "ns/s/svc", "simulation", "ab" * 32
    line = started_line(prov, "/usr/bin/python3", prov.argv, plan)
    assert line == ("veil-launcher attested ns/s/svc (simulation), measurement abababababab, "
                    "starting python3 print_env.py")
    # arguments that are not the image's measured command may hold provisioned secrets
    line = started_line(prov, "/usr/bin/python3", ["python3", "-c", "s3cret"], plan)
    assert "s3cret" not in line and line.endswith(
        "starting /usr/bin/python3 (arguments from the session not shown)")
    assert "\n" not in line
    # a refusal's prefix is "veil-launcher: " (what `veil up` reports as the reason)
    assert not line.startswith("veil-launcher: ")


def test_a_cas_without_the_pinned_key_is_not_spoken_to(
    image_root: tuple[Path, str], fake_cas: FakeCas, tmp_path: Path
) -> None:
    (tmp_path / "x").mkdir()
    other = cert_and_key(tmp_path / "x")[2]
    with pytest.raises(LaunchError, match="does not hold the pinned CAS key"):
        provision(env_for(fake_cas, other), str(image_root[0]))
    assert fake_cas.evidence == []


def test_baked_key_file_wins_over_the_environment_and_is_measured(
    image_root: tuple[Path, str], fake_cas: FakeCas, tmp_path: Path
) -> None:
    root, before = image_root
    (tmp_path / "y").mkdir()
    wrong = cert_and_key(tmp_path / "y")[2]
    (root / "etc/veil/cas-key").write_text(fake_cas.key_b64 + "\n")
    with pytest.raises(LaunchError, match="measurement does not match"):
        provision(env_for(fake_cas, wrong), str(root))
    assert fake_cas.evidence[-1]["measurement"] != before
    fake_cas.expected = fake_cas.evidence[-1]["measurement"]
    assert provision(env_for(fake_cas, wrong), str(root)).argv == ["true"]


@pytest.mark.parametrize("env,msg", [
    ({"SCONE_CAS_ADDR": "x", "SCONE_CAS_KEY": "AA=="}, "SCONE_CONFIG_ID"),
    ({"SCONE_CONFIG_ID": "a/b/c", "SCONE_CAS_KEY": "AA=="}, "SCONE_CAS_ADDR"),
    ({"SCONE_CONFIG_ID": "a/b/c", "SCONE_CAS_ADDR": "x"}, "no pinned CAS key"),
])
def test_missing_configuration_is_explained(image_root: tuple[Path, str], env: dict[str, str],
                                            msg: str) -> None:
    with pytest.raises(LaunchError, match=msg):
        provision(env, str(image_root[0]))


def test_provisioned_env_replaces_the_container_env() -> None:
    prov = Provisioned({"env": {"API_PASSWORD": "from-cas"}, "argv": ["x"]})
    assert program_env(prov) == {**BASE_ENV, "API_PASSWORD": "from-cas"}


def test_only_measured_programs_are_run(tmp_path: Path) -> None:
    from veil.runtime.launcher import resolve_program

    for d in ("usr/bin", "usr/local/bin", "app", "tmp"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("usr/bin/python3", "app/run.sh", "tmp/run.sh"):
        (tmp_path / f).write_text("#!/bin/sh\n")
        (tmp_path / f).chmod(0o755)
    plan = MeasurementPlan(roots=["/"], command="python3 x.py", pwd="/app", local_env={},
                           exclude=list(RUNTIME_PATHS))
    env = {"PATH": "/usr/local/bin:/usr/bin"}
    assert resolve_program("python3", env, plan, str(tmp_path)) == "/usr/bin/python3"
    assert resolve_program("./run.sh", env, plan, str(tmp_path)) == "/app/run.sh"
    with pytest.raises(LaunchError, match=re.escape("/tmp/run.sh, which is not measured")):
        resolve_program("/tmp/run.sh", env, plan, str(tmp_path))
    with pytest.raises(LaunchError, match="not found"):
        resolve_program("nope", env, plan, str(tmp_path))
