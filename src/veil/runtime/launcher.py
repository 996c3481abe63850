"""The image entrypoint: measure, attest to CAS, receive the configuration, exec the program.

Implements `docs/attestation-protocol.md` with the standard library only. The program never
starts unconfigured: any failure (a way around the measurement, CAS unreachable, wrong CAS key,
refused evidence) prints the reason and exits non-zero. Before measuring, `guard` refuses
loader/interpreter variables, preloaded libraries and mounts over measured paths; injection
files are written by `files`. The environment the program sees is what CAS provisions plus a
few fixed basics; variables given to the container (`podman run -e ...`) are not passed on, so
they can neither override nor add to the provisioned configuration.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import posixpath
import socket
import ssl
import sys
import time
from collections.abc import Mapping, Sequence

from veil.runtime.der import DerError, spki_from_certificate
from veil.runtime.files import FileRefusal, write_file
from veil.runtime.guard import Refusal, check_start
from veil.runtime.measure import (
    PLAN_PATH,
    RUNTIME_PATHS,
    MeasurementError,
    MeasurementPlan,
    Measuring,
    is_excluded,
)
from veil.runtime.tsm import TSM_PATH, TsmError, evidence_report, make_report

# `typing` costs every start a few milliseconds of CPU: only the type checker reads it here
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = [
    "CAS_KEY_PATH",
    "PLATFORMS",
    "LaunchError",
    "Provisioned",
    "choose_platform",
    "main",
    "provision",
]

CAS_KEY_PATH = "/etc/veil/cas-key"
DEFAULT_PORT = 8081
# the whole environment of the program besides what CAS provisions: nothing comes from the
# container
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    # bytecode written at run time would land in measured directories and change the next start
    "PYTHONDONTWRITEBYTECODE": "1",
}
_MAX_LINE = 65536
_MAX_HEADERS = 100  # header lines of one answer
# VEIL_PLATFORM: `auto` uses configfs-tsm when the machine has it, else simulation
PLATFORMS = ("auto", "simulation", "sev-snp", "tdx")
# CAS may still be starting (a pod and its CAS, `veil up`): a refused or reset connection is
# tried again, with growing pauses, for this long. Nothing else is: not a TLS failure, not a
# timeout, never an answer of CAS.
CONNECT_RETRY_SECONDS = 5.0


class LaunchError(Exception):
    """Why the program is not started; printed as is (never holds a secret)."""


class Provisioned:
    def __init__(self, doc: Mapping[str, Any]) -> None:
        env = doc.get("env") or {}
        argv = doc.get("argv") or []
        if not isinstance(env, dict) or not isinstance(argv, list):
            raise LaunchError("CAS sent a malformed configuration (env/argv)")
        self.env: dict[str, str] = {str(k): str(v) for k, v in env.items()}
        self.argv: list[str] = [str(a) for a in argv]
        self.pwd: str | None = doc.get("pwd")
        self.files: list[dict[str, Any]] = list(doc.get("files") or [])
        # what the attestation was (filled in by `provision`; printed on success, no secret)
        self.config_id = ""
        self.platform = ""
        self.measurement = ""


def _cas_address(addr: str) -> tuple[str, int]:
    addr = addr.strip()
    for prefix in ("https://", "http://"):
        if addr.startswith(prefix):
            addr = addr[len(prefix) :]
    addr = addr.rstrip("/")
    if addr.startswith("["):  # [v6]:port
        host, _, rest = addr[1:].partition("]")
        return host, int(rest.lstrip(":") or DEFAULT_PORT)
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, DEFAULT_PORT
    try:
        return host, int(port)
    except ValueError as err:
        raise LaunchError(f"SCONE_CAS_ADDR {addr!r} is not HOST[:PORT]") from err


def _pinned_key(environ: Mapping[str, str], root: str) -> bytes:
    path = os.path.join(root, CAS_KEY_PATH.lstrip("/"))
    text = None
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        # latin-1 never fails; a byte outside base64 is refused below like any other
        text = data.decode("latin-1")
    else:
        text = environ.get("SCONE_CAS_KEY")
    if not text or not text.strip():
        raise LaunchError(
            f"no pinned CAS key: set SCONE_CAS_KEY or bake {CAS_KEY_PATH} into the image"
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise LaunchError("the pinned CAS key is not base64") from err


class _Cas:
    """HTTPS to CAS whose certificate must carry the pinned public key — every connection,
    a re-opened one too. A small HTTP/1.1 client (JSON in, JSON out): `http.client` would cost
    every start about 10 ms of CPU for the e-mail parser it imports."""

    def __init__(self, host: str, port: int, key: bytes, timeout: float = 30.0) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # trust comes from the pinned key below, not from a CA or the host name
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.host, self.port, self.key, self.timeout = host, port, key, timeout
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.sock: ssl.SSLSocket | None = None
        self.rfile: Any = None
        self._connect()

    def _connect(self) -> None:
        deadline = time.monotonic() + CONNECT_RETRY_SECONDS
        pause = 0.05
        while True:
            raw = None
            try:
                raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
                sock = self.ctx.wrap_socket(raw, server_hostname=self.host)
                break
            except (ConnectionRefusedError, ConnectionResetError) as err:  # still starting?
                if raw is not None:
                    raw.close()
                if time.monotonic() + pause > deadline:
                    raise LaunchError(
                        f"cannot reach CAS at {self.where}: {err.strerror or err} (tried for "
                        f"{CONNECT_RETRY_SECONDS:g} s)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            except OSError as err:
                if raw is not None:
                    raw.close()
                raise LaunchError(f"cannot reach CAS at {self.where}: {err}") from None
        try:
            spki = spki_from_certificate(sock.getpeercert(binary_form=True) or b"")
        except DerError as err:
            sock.close()
            raise LaunchError(
                f"CAS at {self.where} presented no usable certificate: {err}"
            ) from None
        if spki != self.key:
            sock.close()
            raise LaunchError(
                f"CAS at {self.where} does not hold the pinned CAS key; refusing to talk to it"
            )
        self.sock, self.rfile = sock, sock.makefile("rb")

    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.rfile = None

    def _line(self) -> bytes:
        line: bytes = self.rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ValueError("a header line longer than 64 KiB")
        if not line:
            raise ValueError("the connection closed before the answer was complete")
        return line

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        version, _, rest = self._line().decode("latin-1").partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP answer: {version[:40]!r}")
        status = int(rest.split(" ", 1)[0])
        headers: dict[str, str] = {}
        lines = 0
        while (line := self._line()) not in (b"\r\n", b"\n"):
            lines += 1
            if lines > _MAX_HEADERS:
                raise ValueError(f"more than {_MAX_HEADERS} header lines")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while size := int(self._line().split(b";", 1)[0], 16):
                body += self.rfile.read(size)
                self._line()
            while self._line() not in (b"\r\n", b"\n"):  # trailers
                pass
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body = self.rfile.read(n)
            if len(body) != n:
                raise ValueError("the connection closed before the answer was complete")
        else:
            body = self.rfile.read()
            headers["connection"] = "close"
        if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            headers["connection"] = "close"
        return status, headers, body

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.where}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Accept: application/json\r\n\r\n"
        ).encode() + data
        try:
            if self.sock is None:  # CAS closed the last one
                self._connect()
            assert self.sock is not None
            self.sock.sendall(request)
            status, headers, raw = self._response()
        except (OSError, ValueError) as err:
            self.close()
            raise LaunchError(f"CAS request {path} failed: {err}") from None
        if headers.get("connection", "").lower() == "close":
            self.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return status, doc


def _reason(status: int, doc: Any) -> str:
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, dict) and detail.get("reason"):
        return str(detail["reason"])
    if isinstance(detail, str):
        return detail
    return f"HTTP {status}"


def choose_platform(
    environ: Mapping[str, str], platform: str | None = None
) -> tuple[str, str | None]:
    """The requested platform (`VEIL_PLATFORM`, default auto) and the configfs-tsm directory
    to use (`VEIL_TSM_PATH`, default the kernel's), or None for simulation evidence.
    A hardware platform that was asked for but is not there is a refusal to start."""
    wanted = (platform or environ.get("VEIL_PLATFORM") or "auto").strip()
    if wanted not in PLATFORMS:
        raise LaunchError(f"VEIL_PLATFORM={wanted!r}; allowed: {', '.join(PLATFORMS)}")
    if wanted == "simulation":
        return wanted, None
    tsm = environ.get("VEIL_TSM_PATH") or TSM_PATH
    if os.path.isdir(tsm):
        return wanted, tsm
    if wanted != "auto":
        raise LaunchError(
            f"VEIL_PLATFORM={wanted}, but there is no configfs-tsm at {tsm}: this is not a "
            f"confidential VM, its Linux is older than 6.7, or configfs is not mounted "
            f"(mount -t configfs none /sys/kernel/config); refusing to start without {wanted} "
            "evidence"
        )
    return wanted, None


def _evidence(wanted: str, tsm: str | None, nonce: str, measurement: str) -> tuple[str, str]:
    """(platform, report) for the provision call: the TEE's report whose report_data is
    SHA-512(nonce || measurement), or simulation evidence when there is no TEE."""
    if tsm is not None:
        try:
            raw = base64.b64decode(nonce, validate=True) + bytes.fromhex(measurement)
        except (binascii.Error, ValueError) as err:
            raise LaunchError("CAS sent a nonce that is not base64") from err
        try:
            rep = make_report(tsm, hashlib.sha512(raw).digest())
            if wanted != "auto" and rep.platform != wanted:
                raise LaunchError(
                    f"VEIL_PLATFORM={wanted}, but the TEE here is {rep.provider!r}; refusing "
                    "to start"
                )
            if rep.platform is not None:
                return rep.platform, evidence_report(rep)
        except TsmError as err:
            raise LaunchError(f"no hardware evidence: {err}") from err
        print(
            f"veil-launcher: configfs-tsm provider {rep.provider!r} is not supported; "
            "sending simulation evidence",
            file=sys.stderr,
            flush=True,
        )
    report = json.dumps({"measurement": measurement, "nonce": nonce}, sort_keys=True)
    return "simulation", base64.b64encode(report.encode()).decode()


def provision(
    environ: Mapping[str, str], root: str = "/", platform: str | None = None
) -> Provisioned:
    """Measure the filesystem at `root`, attest to CAS and return what CAS provisions.
    `platform` overrides VEIL_PLATFORM (see `choose_platform`)."""
    wanted, tsm = choose_platform(environ, platform)
    config_id = environ.get("SCONE_CONFIG_ID", "")
    if config_id.count("/") != 2 or not all(config_id.split("/")):
        raise LaunchError(f"SCONE_CONFIG_ID must be NAMESPACE/SESSION/SERVICE, got {config_id!r}")
    addr = environ.get("SCONE_CAS_ADDR")
    if not addr:
        raise LaunchError("SCONE_CAS_ADDR is not set (HOST[:PORT] of CAS)")
    key = _pinned_key(environ, root)
    plan = read_plan(root)
    try:
        check_start(environ, root, plan.exclude, plan.host_paths)
    except Refusal as err:
        raise LaunchError(str(err)) from None
    host, port = _cas_address(addr)
    # the measurement's workers hash the image while this process talks to CAS
    measuring = start_measuring(root, plan)
    try:
        cas = _Cas(host, port, key)
        try:
            status, doc = cas.post("/v1/attestation/nonce", {"config_id": config_id})
            if status != 200 or not isinstance(doc, dict) or "nonce" not in doc:
                raise LaunchError(f"CAS refused a nonce for {config_id}: {_reason(status, doc)}")
            nonce = str(doc["nonce"])
            measurement = finish_measuring(measuring)
            evidence_platform, report = _evidence(wanted, tsm, nonce, measurement)
            evidence = {
                "config_id": config_id,
                "measurement": measurement,
                "nonce": nonce,
                "platform": evidence_platform,
                "report": report,
            }
            status, doc = cas.post("/v1/attestation/provision", evidence)
        finally:
            cas.close()
    finally:
        measuring.close()
    if status != 200 or not isinstance(doc, dict):
        raise LaunchError(f"CAS refused to configure {config_id}: {_reason(status, doc)}")
    prov = Provisioned(doc)
    prov.config_id, prov.platform, prov.measurement = config_id, evidence_platform, measurement
    return prov


def read_plan(root: str = "/") -> MeasurementPlan:
    plan_file = os.path.join(root, PLAN_PATH.lstrip("/"))
    try:
        with open(plan_file, encoding="utf-8") as f:
            return MeasurementPlan.from_json(f.read())
    except (OSError, ValueError, KeyError) as err:
        raise LaunchError(f"cannot read the measurement plan {PLAN_PATH}: {err}") from err


def start_measuring(root: str, plan: MeasurementPlan) -> Measuring:
    try:
        return Measuring(root, plan)
    except MeasurementError as err:
        raise LaunchError(f"cannot measure the image: {err}") from None


def finish_measuring(measuring: Measuring) -> str:
    try:
        return measuring.digest()
    except MeasurementError as err:
        raise LaunchError(f"cannot measure the image: {err}") from None


def measure_image(root: str = "/", plan: MeasurementPlan | None = None) -> str:
    measuring = start_measuring(root, plan or read_plan(root))
    try:
        return finish_measuring(measuring)
    finally:
        measuring.close()


def write_files(files: Sequence[Mapping[str, Any]], plan: MeasurementPlan,
                root: str = "/") -> None:
    """Write the provisioned injection files; each must be one the image's plan leaves out of
    the measurement (else the next start would measure the written content)."""
    for f in files:
        path = posixpath.normpath(str(f.get("path") or "/"))
        if path not in plan.exclude and not is_excluded(path, RUNTIME_PATHS):
            raise LaunchError(
                f"CAS sent the injection file {path}, which this image measures (its plan leaves "
                "out only the injection files its manifest names); rebuild the image with it in "
                "injection_files"
            )
        try:
            mode = int(str(f.get("mode") or "0600"), 8)
            data = base64.b64decode(str(f.get("content") or ""), validate=True)
        except (ValueError, binascii.Error) as err:
            raise LaunchError(f"CAS sent a malformed injection file {path}: {err}") from None
        try:
            write_file(root, path, data, mode & 0o7777)
        except FileRefusal as err:
            raise LaunchError(f"refusing to start: {err}") from None


def resolve_program(argv0: str, env: Mapping[str, str], plan: MeasurementPlan,
                    root: str = "/") -> str:
    """The absolute path to exec; it must be a measured file.

    A PATH lookup could otherwise find an unmeasured `/usr/local/bin/python3` planted ahead of
    the measured `/usr/bin/python3`.
    """
    if "/" in argv0:
        candidates = [argv0 if argv0.startswith("/") else os.path.join(plan.pwd, argv0)]
    else:
        dirs = env.get("PATH", BASE_ENV["PATH"]).split(":")
        candidates = [os.path.join(d, argv0) for d in dirs if d.startswith("/")]
    for c in candidates:
        host = os.path.join(root, c.lstrip("/"))
        if os.path.isfile(host) and os.access(host, os.X_OK):
            path = os.path.normpath(c)
            if not is_excluded(path, plan.roots) or is_excluded(path, plan.exclude):
                raise LaunchError(
                    f"the command {argv0!r} resolves to {path}, which is not measured; "
                    "refusing to run it"
                )
            return path
    raise LaunchError(f"the command {argv0!r} was not found")


def program_env(prov: Provisioned) -> dict[str, str]:
    """The program's whole environment: the fixed basics and what CAS provisioned."""
    return {**BASE_ENV, **prov.env}


def started_line(prov: Provisioned, program: str, argv: Sequence[str],
                 plan: MeasurementPlan) -> str:
    """The one line printed on success. The arguments are shown only when they are the image's
    own measured command: a session's may hold provisioned secrets. It does not start with
    `veil-launcher: `, the prefix of a refusal (`veil up` reads the last such line as the
    reason the program never started)."""
    shown = (" ".join(argv) if list(argv) == plan.command.split()
             else f"{program} (arguments from the session not shown)")
    return (f"veil-launcher attested {prov.config_id} ({prov.platform}), measurement "
            f"{prov.measurement[:12]}, starting {shown}")


def _fail(msg: str) -> NoReturn:
    print(f"veil-launcher: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args == ["--print-measurement"]:
            print(measure_image("/"))
            return 0
        if args:
            raise LaunchError(
                "this image takes its command from CAS; container arguments are not accepted"
            )
        prov = provision(os.environ, "/")
        plan_cmd = prov.argv
        if not plan_cmd:
            raise LaunchError("CAS sent no command to run")
        env = program_env(prov)
        plan = read_plan("/")
        program = resolve_program(plan_cmd[0], env, plan)
        write_files(prov.files, plan)
        if prov.pwd:
            os.chdir(prov.pwd)
    except LaunchError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"cannot prepare the program: {err}")
    print(started_line(prov, program, plan_cmd, plan), file=sys.stderr, flush=True)
    sys.stdout.flush()
    try:
        os.execve(program, plan_cmd, env)
    except OSError as err:
        _fail(f"cannot start {plan_cmd[0]!r}: {err}")


if __name__ == "__main__":
    sys.exit(main())
