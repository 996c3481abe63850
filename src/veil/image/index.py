"""The local index of service descriptions, keyed by image reference.

`veil apply -f service.yaml` (also with --dry-run) records the description here; a mesh looks its
services up here first and falls back to the image's label in the registry. One JSON file per
image reference under `$VEIL_HOME/index/`, written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.manifest.description import ServiceDescription
from veil.paths import home_dir

__all__ = ["IndexEntry", "LocalIndex"]


@dataclass(frozen=True)
class IndexEntry:
    image: str
    description: ServiceDescription
    digest: str | None = None  # registry manifest digest once pushed (sha256:...)
    source: str | None = None  # the manifest file it came from


class LocalIndex:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or home_dir()) / "index"

    def _path(self, image: str) -> Path:
        return self.root / (hashlib.sha256(image.encode()).hexdigest()[:32] + ".json")

    def put(self, entry: IndexEntry) -> None:
        doc = {
            "image": entry.image,
            "digest": entry.digest,
            "source": entry.source,
            "description": json.loads(entry.description.to_json()),
        }
        atomic_write_text(self._path(entry.image), json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def get(self, image: str) -> IndexEntry | None:
        p = self._path(image)
        if not p.exists():
            return None
        try:
            doc = json.loads(p.read_text())
            return IndexEntry(
                image=doc["image"],
                description=ServiceDescription.model_validate(doc["description"]),
                digest=doc.get("digest"),
                source=doc.get("source"),
            )
        except (ValueError, KeyError, TypeError) as err:  # ValidationError is a ValueError
            raise OperationalError(
                f"the local index entry {p} for {image} is unreadable "
                f"({type(err).__name__})",
                hint="delete it and record the service again with `veil apply -f service.yaml`",
            ) from None

    def all(self) -> list[IndexEntry]:
        if not self.root.exists():
            return []
        out = []
        for p in sorted(self.root.glob("*.json")):
            try:
                image = json.loads(p.read_text())["image"]
            except (ValueError, KeyError, TypeError):
                continue  # `get` of that image reports it; listing skips what it cannot name
            e = self.get(image)
            if e is not None:
                out.append(e)
        return out
