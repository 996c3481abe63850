"""The launcher's pieces: the pinned key, the DER walk, files, environment, CAS answers.

The attestation itself is tested end to end against the real CAS in tests/e2e; here a small
in-test HTTPS server (a test double speaking docs/attestation-protocol.md) checks the client
side in isolation: pinning, the evidence it sends, and how refusals are reported.
"""

from __future__ import annotations

import base64
import datetime
import io
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
from tests.runtime.fake_tsm import fake_tsm
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
from veil.runtime.measure import RUNTIME_PATHS, VERSION, MeasurementPlan, measure


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
        # what it answers: the nonce request, and the configuration of the expected measurement
        self.nonce_answer: tuple[int, Any] = (200, {"nonce": "bm9uY2U=", "expires_in": 60})
        self.answer: dict[str, Any] = {"env": {"API_USER": "me"}, "argv": ["true"], "pwd": "/",
                                       "files": []}
        self.evidence: list[dict[str, Any]] = []
        self.requests = 0
        self.connections: set[tuple[str, int]] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # chunked: HTTP/1.1, one kept-alive connection, answers in chunks (as a proxy may
            # send them); else HTTP/1.0, a connection per request
            protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"
            # a client that leaves its connection open (a mutant of the launcher) must not
            # hold the one-threaded server, and the test's teardown, forever
            timeout = 5

            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                if self.path == "/v1/attestation/nonce":
                    code, doc = outer.nonce_answer
                else:
                    outer.evidence.append(body)
                    if body["measurement"] == outer.expected:
                        code, doc = 200, outer.answer
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
    with pytest.raises(LaunchError, match=r"cannot reach CAS at 127\.0\.0\.1:\d+: Connection "
                       r"refused \(tried for 0\.5 s\)$"):
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


# -- CAS's answers, byte by byte ---------------------------------------------------------------
class _Peer:
    """The socket side of `_Cas` after the pinned-key check: what it sends is recorded, what it
    reads comes from `answer`."""

    def __init__(self, fail: OSError | None = None) -> None:
        self.sent = b""
        self.fail = fail

    def sendall(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent += data

    def close(self) -> None:
        pass


def cas_answering(answer: bytes, fail: OSError | None = None) -> Any:
    cas = launcher._Cas.__new__(launcher._Cas)  # connected and pinned, as far as it knows
    cas.where = "cas:8081"
    cas.sock, cas.rfile = _Peer(fail), io.BytesIO(answer)  # type: ignore[assignment]
    return cas


def test_an_answer_with_a_length_is_read_to_that_length() -> None:
    cas = cas_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad:\r\n\r\n{}next")
    assert cas._response() == (200, {"content-length": "2", "x-pad": ""}, b"{}")
    assert cas.rfile.read() == b"next"  # a kept-alive connection's next answer


def test_chunks_with_hex_sizes_extensions_and_trailers_are_joined() -> None:
    body = json.dumps({"env": {"K": "v" * 30}}).encode()
    chunks = (b"1a;name=x\r\n" + body[:26] + b"\r\n"
              + b"%x\r\n" % (len(body) - 26) + body[26:] + b"\r\n0\r\n")
    cas = cas_answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
                        + b"X-Trailer: 1\r\n\r\nnext")
    status, headers, raw = cas._response()
    assert (status, raw) == (200, body) and "connection" not in headers
    assert cas.rfile.read() == b"next"


@pytest.mark.parametrize("answer,msg", [
    # what a peer sent is shown in the error, bounded
    (b"SSH-2.0-" + b"x" * 100 + b" OpenSSH\r\n\r\n", r"^not an HTTP answer: 'SSH-2\.0-x{32}'$"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "closed before the answer was complete"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "closed before the answer was complete"),
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n",
     "more than 100 header lines"),
])
def test_malformed_answers_are_refused(answer: bytes, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        cas_answering(answer)._response()


def test_header_lines_are_counted_not_their_names() -> None:
    def answer(lines: list[bytes]) -> bytes:
        return b"HTTP/1.1 204 No Content\r\n" + b"".join(lines) + b"\r\n"

    hundred = [b"X-%d: y\r\n" % i for i in range(99)] + [b"Content-Length: 0\r\n"]
    assert cas_answering(answer(hundred))._response()[0] == 204
    for lines in ([*hundred, b"X-last: y\r\n"], [b"X-same: y\r\n"] * 101):
        with pytest.raises(ValueError, match="more than 100 header lines"):
            cas_answering(answer(lines))._response()


def test_a_header_line_is_bounded_at_64_kib() -> None:
    line = b"X: " + b"y" * (launcher._MAX_LINE - 5) + b"\r\n"
    assert len(line) == 65536
    cas = cas_answering(b"HTTP/1.1 204 No Content\r\n" + line + b"Content-Length: 0\r\n\r\n")
    assert cas._response()[0] == 204
    with pytest.raises(ValueError, match="a header line longer than 64 KiB"):  # one byte more
        cas_answering(b"HTTP/1.1 204 No Content\r\nX" + line + b"\r\n")._response()


def test_an_answer_without_length_ends_with_the_connection() -> None:
    cas = cas_answering(b"HTTP/1.1 200 OK\r\n\r\n{\"a\": 1}")
    assert cas._response() == (200, {"connection": "close"}, b'{"a": 1}')
    cas = cas_answering(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert cas._response()[1]["connection"] == "close"
    cas = cas_answering(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}")
    assert cas._response()[1]["connection"] == "Keep-Alive"


@pytest.mark.parametrize("answer,fail,msg", [
    (b"garbage\r\n\r\n", None, "not an HTTP answer"),
    (b"", BrokenPipeError(32, "Broken pipe"), "Broken pipe"),
])
def test_a_failed_request_is_a_launch_error(answer: bytes, fail: OSError | None,
                                            msg: str) -> None:
    cas = cas_answering(answer, fail)
    with pytest.raises(LaunchError, match=f"CAS request /v1/attestation/nonce failed: .*{msg}"):
        cas.post("/v1/attestation/nonce", {"config_id": "a/b/c"})
    assert cas.sock is None  # never used again


# -- what the launcher refuses before and around the attestation -------------------------------
@pytest.mark.parametrize("config_id", ["ns/s", "ns/s/svc/x", "ns//svc", "/s/svc", "ns/s/"])
def test_a_config_id_is_three_names(image_root: tuple[Path, str], fake_cas: FakeCas,
                                    config_id: str) -> None:
    with pytest.raises(LaunchError, match="SCONE_CONFIG_ID must be NAMESPACE/SESSION/SERVICE"):
        provision({**env_for(fake_cas), "SCONE_CONFIG_ID": config_id}, str(image_root[0]))
    assert fake_cas.requests == 0


@pytest.mark.parametrize("answer,reason", [
    ((404, {"detail": {"reason": "no such session"}}), "no such session"),
    ((404, {"detail": "unknown config id"}), "unknown config id"),
    ((500, None), "HTTP 500"),
    ((200, {"expires_in": 60}), "HTTP 200"),
    ((200, ["bm9uY2U="]), "HTTP 200"),
    # a refusal is one whatever else it carries
    ((429, {"nonce": "bm9uY2U=", "detail": "slow down"}), "slow down"),
])
def test_no_nonce_no_evidence(image_root: tuple[Path, str], fake_cas: FakeCas,
                              answer: tuple[int, Any], reason: str) -> None:
    fake_cas.nonce_answer = answer
    with pytest.raises(LaunchError, match=f"^CAS refused a nonce for ns/s/svc: {reason}$"):
        provision(env_for(fake_cas), str(image_root[0]))
    assert fake_cas.requests == 1 and fake_cas.evidence == []


@pytest.mark.parametrize("answer", [{"env": ["A=1"], "argv": ["true"]},
                                    {"env": {}, "argv": "true"}])
def test_a_malformed_configuration_is_refused(image_root: tuple[Path, str], fake_cas: FakeCas,
                                              answer: dict[str, Any]) -> None:
    fake_cas.answer = answer
    with pytest.raises(LaunchError, match=r"CAS sent a malformed configuration \(env/argv\)"):
        provision(env_for(fake_cas), str(image_root[0]))


@pytest.mark.parametrize("addr,where", [
    ("cas", ("cas", 8081)), (" https://cas.example:8443/ ", ("cas.example", 8443)),
    ("http://10.0.0.1", ("10.0.0.1", 8081)), ("[::1]:9", ("::1", 9)),
    ("[fd00::2]", ("fd00::2", 8081)),
])
def test_cas_addresses(addr: str, where: tuple[str, int]) -> None:
    assert launcher._cas_address(addr) == where


def test_a_cas_address_with_a_bad_port_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"SCONE_CAS_ADDR 'cas:https' is not HOST\[:PORT\]"):
        launcher._cas_address("cas:https")


@pytest.mark.parametrize("key", ["not base64!", "AAAA!", "AAA", "ключ"])
def test_a_pinned_key_that_is_not_base64_is_refused(image_root: tuple[Path, str],
                                                     fake_cas: FakeCas, key: str) -> None:
    with pytest.raises(LaunchError, match="the pinned CAS key is not base64"):
        provision(env_for(fake_cas, key), str(image_root[0]))
    assert fake_cas.requests == 0


@pytest.mark.parametrize("data", ["ключ".encode(), b"\xff\xfe", b"AAAA\x00"])
def test_a_baked_key_file_that_is_not_base64_text_is_refused(
    image_root: tuple[Path, str], fake_cas: FakeCas, data: bytes
) -> None:
    (image_root[0] / "etc/veil/cas-key").write_bytes(data)
    with pytest.raises(LaunchError, match="the pinned CAS key is not base64"):
        provision(env_for(fake_cas, fake_cas.key_b64), str(image_root[0]))
    assert fake_cas.requests == 0


@pytest.mark.parametrize("plan,msg", [
    (None, "No such file"), ("{not json", "Expecting"), ("{}", "version None"),
    (json.dumps({"version": VERSION}), "'roots'"),
])
def test_an_image_without_a_readable_plan_does_not_start(
    image_root: tuple[Path, str], fake_cas: FakeCas, plan: str | None, msg: str
) -> None:
    root = image_root[0]
    plan_file = root / launcher.PLAN_PATH.lstrip("/")
    if plan is None:
        plan_file.unlink()
    else:
        plan_file.write_text(plan)
    with pytest.raises(LaunchError, match=f"cannot read the measurement plan .*{msg}"):
        provision(env_for(fake_cas), str(root))
    assert fake_cas.requests == 0


def test_an_image_that_cannot_be_measured_does_not_start(image_root: tuple[Path, str],
                                                         fake_cas: FakeCas) -> None:
    root = image_root[0]
    plan = launcher.read_plan(str(root))
    plan.roots.append("/opt/gone")
    (root / launcher.PLAN_PATH.lstrip("/")).write_text(plan.to_json())
    with pytest.raises(LaunchError, match=r"cannot measure the image: .*/opt/gone"):
        provision(env_for(fake_cas), str(root))
    assert fake_cas.requests == 0

    class Failing:
        def digest(self) -> str:
            raise launcher.MeasurementError("/app/main.py changed while it was measured")

    with pytest.raises(LaunchError, match=r"cannot measure the image: /app/main\.py changed"):
        launcher.finish_measuring(Failing())  # type: ignore[arg-type]


def test_a_body_that_is_not_json_is_no_document() -> None:
    cas = cas_answering(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 6\r\n\r\n<html>")
    assert cas.post("/v1/attestation/provision", {}) == (502, None)


def test_a_peer_that_cannot_be_reached_is_a_launch_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*a: object, **k: object) -> socket.socket:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(LaunchError, match=r"^cannot reach CAS at \[fd00::1\]:8081: "
                       r"\[Errno 101\] Network is unreachable$"):
        launcher._Cas("fd00::1", 8081, b"key")


def test_a_certificate_without_a_key_is_refused(fake_cas: FakeCas,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(der: bytes) -> bytes:
        raise DerError("not a certificate")

    monkeypatch.setattr(launcher, "spki_from_certificate", broken)
    host, port = launcher._cas_address(fake_cas.addr)
    with pytest.raises(LaunchError, match=r"CAS at 127\.0\.0\.1:\d+ presented no usable "
                       "certificate: not a certificate"):
        launcher._Cas(host, port, base64.b64decode(fake_cas.key_b64))


@pytest.mark.parametrize("nonce", ["bm9uY2U=!", "bm9u Y2U=", "nönce"])
def test_a_nonce_that_is_not_base64_is_not_bound_into_hardware_evidence(
    image_root: tuple[Path, str], fake_cas: FakeCas, tmp_path: Path, nonce: str
) -> None:
    fake_cas.nonce_answer = (200, {"nonce": nonce})
    with (
        fake_tsm(tmp_path / "tsm", "tdx_guest", lambda _rd: (b"quote", b"")) as tsm,
        pytest.raises(LaunchError, match="CAS sent a nonce that is not base64"),
    ):
        provision({**env_for(fake_cas), "VEIL_TSM_PATH": str(tmp_path / "tsm")},
                  str(image_root[0]))
    assert tsm.requests == [] and fake_cas.evidence == []


def test_measure_image_measures_with_the_images_plan_or_the_one_given(
        image_root: tuple[Path, str]) -> None:
    root, m = image_root
    assert launcher.measure_image(str(root)) == m
    plan = launcher.read_plan(str(root))
    plan.exclude.append("/app")
    assert launcher.measure_image(str(root), plan) == measure(str(root), plan) != m


def test_a_command_that_is_not_executable_is_passed_over(tmp_path: Path) -> None:
    for d in ("usr/bin", "usr/local/bin/python3"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "usr/bin/python3").write_text("#!/bin/sh\n")
    (tmp_path / "usr/bin/python3").chmod(0o755)
    (tmp_path / "usr/bin/tool").write_text("not executable\n")
    plan = MeasurementPlan(roots=["/"], command="python3 x.py", pwd="/", local_env={},
                           exclude=list(RUNTIME_PATHS))
    # a folder of that name, and a file without the x bit, come first on PATH
    env = {"PATH": "/usr/local/bin:/usr/bin"}
    assert launcher.resolve_program("python3", env, plan, str(tmp_path)) == "/usr/bin/python3"
    with pytest.raises(LaunchError, match="'tool' was not found"):
        launcher.resolve_program("tool", env, plan, str(tmp_path))


# -- injection files as CAS sends them ----------------------------------------------------------
def injection(path: str, **fields: str) -> dict[str, str]:
    return {"path": path, "content": base64.b64encode(b"s3cret").decode(), **fields}


def test_injection_file_modes(tmp_path: Path) -> None:
    files = [injection("/run/a", mode="0755"), injection("/run/b", mode="100644"),
             injection("/run/c"), injection("/run/d", mode="4750")]
    plan = MeasurementPlan(roots=["/"], command="x", pwd="/", local_env={},
                           exclude=list(RUNTIME_PATHS))
    launcher.write_files(files, plan, str(tmp_path))
    modes = {p.name: p.stat().st_mode & 0o7777 for p in (tmp_path / "run").iterdir()}
    # the file type bits of a git-style mode are dropped; no mode is private to the owner
    assert modes == {"a": 0o755, "b": 0o644, "c": 0o600, "d": 0o4750}
    assert (tmp_path / "run/c").read_bytes() == b"s3cret"


@pytest.mark.parametrize("fields,msg", [
    ({"mode": "rw-r--r--"}, "invalid literal for int"),
    ({"mode": "0644", "content": "czNjcmV0!"}, "Non-base64 digit|Only base64 data"),
    ({"mode": "0644", "content": "czNj cmV0"}, "Non-base64 digit|Only base64 data"),
])
def test_a_malformed_injection_file_is_refused(tmp_path: Path, fields: dict[str, str],
                                               msg: str) -> None:
    plan = MeasurementPlan(roots=["/"], command="x", pwd="/", local_env={},
                           exclude=list(RUNTIME_PATHS))
    with pytest.raises(LaunchError, match=f"CAS sent a malformed injection file /run/x: .*({msg})"):
        launcher.write_files([injection("/run/x", **fields)], plan, str(tmp_path))
    assert not (tmp_path / "run").exists()
