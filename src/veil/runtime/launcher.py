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
import http.client
import json
import os
import posixpath
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from veil.runtime.der import DerError, spki_from_certificate
from veil.runtime.files import FileRefusal, write_file
from veil.runtime.guard import Refusal, check_start
from veil.runtime.measure import (
    PLAN_PATH,
    RUNTIME_PATHS,
    MeasurementError,
    MeasurementPlan,
    is_excluded,
    measure,
)
from veil.runtime.tsm import TSM_PATH, TsmError, evidence_report, make_report

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
# VEIL_PLATFORM: `auto` uses configfs-tsm when the machine has it, else simulation
PLATFORMS = ("auto", "simulation", "sev-snp", "tdx")


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
        with open(path, encoding="ascii") as f:
            text = f.read()
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
    """One HTTPS connection to CAS whose certificate must carry the pinned public key."""

    def __init__(self, host: str, port: int, key: bytes, timeout: float = 30.0) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # trust comes from the pinned key below, not from a CA or the host name
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
        self._connect(host, port, key)

    def _connect(self, host: str, port: int, key: bytes) -> None:
        last: Exception | None = None
        for attempt in range(5):
            try:
                self.conn.connect()
                break
            except OSError as err:  # CAS may still be starting
                last = err
                self.conn.close()
                time.sleep(0.5 * (attempt + 1))
        else:
            raise LaunchError(f"cannot reach CAS at {host}:{port}: {last}")
        sock = self.conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        try:
            spki = spki_from_certificate(der or b"")
        except DerError as err:
            raise LaunchError(
                f"CAS at {host}:{port} presented no usable certificate: {err}"
            ) from err
        if spki != key:
            self.conn.close()
            raise LaunchError(
                f"CAS at {host}:{port} does not hold the pinned CAS key; refusing to talk to it"
            )

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        try:
            self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as err:
            raise LaunchError(f"CAS request {path} failed: {err}") from err
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return resp.status, doc


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
    measurement = measure_image(root, plan)
    host, port = _cas_address(addr)
    cas = _Cas(host, port, key)
    try:
        status, doc = cas.post("/v1/attestation/nonce", {"config_id": config_id})
        if status != 200 or not isinstance(doc, dict) or "nonce" not in doc:
            raise LaunchError(f"CAS refused a nonce for {config_id}: {_reason(status, doc)}")
        nonce = str(doc["nonce"])
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
        cas.conn.close()
    if status != 200 or not isinstance(doc, dict):
        raise LaunchError(f"CAS refused to configure {config_id}: {_reason(status, doc)}")
    return Provisioned(doc)


def read_plan(root: str = "/") -> MeasurementPlan:
    plan_file = os.path.join(root, PLAN_PATH.lstrip("/"))
    try:
        with open(plan_file, encoding="utf-8") as f:
            return MeasurementPlan.from_json(f.read())
    except (OSError, ValueError, KeyError) as err:
        raise LaunchError(f"cannot read the measurement plan {PLAN_PATH}: {err}") from err


def measure_image(root: str = "/", plan: MeasurementPlan | None = None) -> str:
    try:
        return measure(root, plan or read_plan(root))
    except MeasurementError as err:
        raise LaunchError(f"cannot measure the image: {err}") from err


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
    sys.stdout.flush()
    try:
        os.execve(program, plan_cmd, env)
    except OSError as err:
        _fail(f"cannot start {plan_cmd[0]!r}: {err}")


if __name__ == "__main__":
    sys.exit(main())
