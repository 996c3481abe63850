"""Hardware evidence through Linux's configfs-tsm (standard library only).

Linux (6.7 and later) exposes the attestation reports of confidential VMs — AMD SEV-SNP and
Intel TDX — through one interface: make a directory under `/sys/kernel/config/tsm/report/`,
write the 64 bytes of report data to its `inblob`, read the report (SNP) or quote (TDX) from
`outblob`. `provider` names the TEE (`sev_guest`, `tdx_guest`), `auxblob` holds what the host
adds (SNP: the certificate table with the VCEK or VLEK), `generation` counts the writes, so a
reader can tell that the report answers its own inblob and not another process's.

This module turns that into the evidence formats of docs/attestation-protocol.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
import time
from collections import namedtuple

__all__ = [
    "PROVIDERS",
    "TSM_PATH",
    "TsmError",
    "TsmReport",
    "evidence_report",
    "make_report",
    "snp_certificate",
]

TSM_PATH = "/sys/kernel/config/tsm/report"
# configfs-tsm provider -> the platform name CAS's verifiers know
PROVIDERS = {"sev_guest": "sev-snp", "tdx_guest": "tdx"}
SNP_REPORT_SIZE = 1184
# GUIDs of the SNP certificate table (GHCB specification, "extended guest request")
# (kept as text: the launcher imports this module at every start, `uuid` only when it is used)
_VCEK = "63da758d-e664-4564-adc5-f4b93be8accd"
_VLEK = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
# configfs makes an entry's attributes together with its directory; only a user-space stand-in
# (a test's) fills them in after the mkdir, so this wait costs nothing on a real kernel
_ATTRIBUTE_WAIT = 10.0


class TsmError(Exception):
    """The TEE did not produce a usable report; the message says why."""


TYPE_CHECKING = False  # `typing` is not imported at start (it costs milliseconds of CPU)
if TYPE_CHECKING:
    from typing import NamedTuple

    class _Report(NamedTuple):
        provider: str
        outblob: bytes
        auxblob: bytes
        generation: int
else:
    _Report = namedtuple("_Report", "provider outblob auxblob generation")


class TsmReport(_Report):
    __slots__ = ()

    @property
    def platform(self) -> str | None:
        return PROVIDERS.get(self.provider)


def _read(entry: str, name: str, required: bool = True) -> bytes:
    path = os.path.join(entry, name)
    deadline = time.monotonic() + _ATTRIBUTE_WAIT
    while True:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            if not required:
                return b""
            if time.monotonic() > deadline:
                raise TsmError(f"configfs-tsm entry {entry} has no {name}") from None
            time.sleep(0.005)
        except OSError as err:  # e.g. EIO from the TEE's firmware, EBUSY from a concurrent write
            raise TsmError(f"reading {path} failed: {err}") from err


def make_report(tsm_path: str, report_data: bytes) -> TsmReport:
    """Ask the TEE for a report over `report_data` (64 bytes) through a fresh entry."""
    if len(report_data) != 64:
        raise TsmError("report data must be 64 bytes")
    try:
        import tempfile  # only on a confidential VM: every start imports this module

        entry = tempfile.mkdtemp(prefix="veil-", dir=tsm_path)
    except OSError as err:
        raise TsmError(f"cannot make a configfs-tsm report entry in {tsm_path}: {err}") from err
    try:
        try:
            with open(os.path.join(entry, "inblob"), "wb") as f:
                f.write(report_data)
        except OSError as err:
            raise TsmError(f"writing the report data to {entry}/inblob failed: {err}") from err
        outblob = _read(entry, "outblob")
        provider = _read(entry, "provider").decode("ascii", "replace").strip()
        auxblob = _read(entry, "auxblob", required=False)
        text = _read(entry, "generation").decode("ascii", "replace").strip()
        try:
            generation = int(text)
        except ValueError:
            raise TsmError(f"configfs-tsm generation {text!r} is not a number") from None
        if generation != 1:
            # another writer touched our entry between our write and our read
            raise TsmError(f"the report entry was written {generation} times, expected once")
        if not outblob:
            raise TsmError(f"the {provider} TEE returned an empty report")
        return TsmReport(provider, outblob, auxblob, generation)
    finally:
        # on configfs rmdir removes the entry with its attributes; a stand-in directory still
        # holds files, and nothing of value is left in it
        with contextlib.suppress(OSError):
            os.rmdir(entry)


def snp_certificate(report: bytes, auxblob: bytes) -> bytes:
    """The DER VCEK or VLEK for an SNP report, from the host's certificate table: entries of
    (16-byte GUID, 32-bit offset, 32-bit length), little-endian, ended by an all-zero entry."""
    if len(report) != SNP_REPORT_SIZE:
        raise TsmError(f"an SEV-SNP report has {SNP_REPORT_SIZE} bytes, the TEE gave {len(report)}")
    import uuid

    (flags,) = struct.unpack_from("<I", report, 0x48)
    wanted = _VLEK if (flags >> 2) & 0x7 == 1 else _VCEK
    kind = "VLEK" if wanted == _VLEK else "VCEK"
    at = 0
    while at + 24 <= len(auxblob):
        guid = auxblob[at : at + 16]
        offset, length = struct.unpack_from("<II", auxblob, at + 16)
        if guid == bytes(16):
            break
        # the table is written with either GUID byte order in the wild; both name the same key
        if guid in (uuid.UUID(wanted).bytes, uuid.UUID(wanted).bytes_le):
            if offset + length > len(auxblob) or length == 0:
                raise TsmError(f"the certificate table's {kind} entry points outside it")
            return auxblob[offset : offset + length]
        at += 24
    raise TsmError(
        f"the host supplied no {kind} certificate with the SEV-SNP report (configfs-tsm "
        "auxblob); configure the host to provide SNP certificates (extended guest requests)"
    )


def evidence_report(rep: TsmReport) -> str:
    """The evidence `report` field for CAS, by platform (docs/attestation-protocol.md)."""
    if rep.platform == "sev-snp":
        cert = snp_certificate(rep.outblob, rep.auxblob)
        doc = {
            "cert": base64.b64encode(cert).decode(),
            "report": base64.b64encode(rep.outblob).decode(),
        }
        return base64.b64encode(json.dumps(doc, sort_keys=True).encode()).decode()
    if rep.platform == "tdx":
        return base64.b64encode(rep.outblob).decode()
    raise TsmError(f"configfs-tsm provider {rep.provider!r} is not one Veil supports")
