"""A stand-in for Linux's configfs-tsm report directory, served by a thread.

The launcher makes an entry (a directory) and writes 64 bytes of report data to its `inblob`;
the thread answers like the kernel would: `provider`, `generation`, `auxblob`, and last the
`outblob` that `answer(report_data)` produces (a report signed under test roots, or a vendor
sample). What it was asked is kept in `requests`.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ARK_GUID", "VCEK_GUID", "VLEK_GUID", "FakeTsm", "cert_table", "fake_tsm"]

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")

Answer = Callable[[bytes], tuple[bytes, bytes]]  # report_data -> (outblob, auxblob)


def cert_table(entries: list[tuple[uuid.UUID, bytes]], little_endian: bool = True) -> bytes:
    """The SNP certificate table: (GUID, offset, length) entries, a zero entry, then the data."""
    head = 24 * (len(entries) + 1)
    table, data = b"", b""
    for guid, blob in entries:
        raw = guid.bytes_le if little_endian else guid.bytes
        table += raw + struct.pack("<II", head + len(data), len(blob))
        data += blob
    return table + bytes(24) + data


class FakeTsm:
    def __init__(self, root: Path, provider: str, answer: Answer, generation: int = 1) -> None:
        self.root = root
        self.generation = generation
        self.provider = provider
        self.answer = answer
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        done: set[str] = set()
        while not self._stop.wait(0.002):
            for entry in self.root.iterdir():
                inblob = entry / "inblob"
                if entry.name in done or not inblob.exists() or inblob.stat().st_size < 64:
                    continue
                done.add(entry.name)
                data = inblob.read_bytes()
                self.requests.append(data)
                out, aux = self.answer(data)
                (entry / "provider").write_text(self.provider + "\n")
                (entry / "generation").write_text(f"{self.generation}\n")
                (entry / "auxblob").write_bytes(aux)
                # written last and whole: the launcher reads it as soon as it exists
                tmp = entry / ".outblob"
                tmp.write_bytes(out)
                os.replace(tmp, entry / "outblob")


@contextmanager
def fake_tsm(
    root: Path, provider: str, answer: Answer, generation: int = 1
) -> Iterator[FakeTsm]:
    tsm = FakeTsm(root, provider, answer, generation)
    tsm.start()
    try:
        yield tsm
    finally:
        tsm.stop()
