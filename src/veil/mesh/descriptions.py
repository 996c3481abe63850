"""Where a mesh finds its services' descriptions: a `Descriptions` lookup by image reference.

`IndexThenRegistry` is what `veil apply` uses: the local index first (`veil apply -f
service.yaml`, also with --dry-run, records there), then the image's label in its registry.
`InMemory` serves tests and callers that already hold the descriptions (the platform).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from veil.errors import ManifestError, Problem, VeilError
from veil.manifest.description import ServiceDescription
from veil.manifest.load import Loaded, load_genservice
from veil.manifest.models import Mesh
from veil.resolve.env import Origin, origins_of_service

__all__ = ["Descriptions", "Found", "InMemory", "IndexThenRegistry", "descriptions_for"]


@dataclass(frozen=True)
class Found:
    """A description; the digest its image was pushed with and the origins of its values
    (file:line in the service manifest) where they are known."""

    description: ServiceDescription
    digest: str | None = None
    origins: Mapping[str, Origin] = field(default_factory=dict)


class Descriptions(Protocol):
    def find(self, image: str) -> Found | str:
        """The description of `image`, or why there is none (one line)."""


@dataclass
class InMemory:
    by_image: Mapping[str, ServiceDescription]
    digests: Mapping[str, str] = field(default_factory=dict)

    def find(self, image: str) -> Found | str:
        d = self.by_image.get(image)
        return Found(d, self.digests.get(image)) if d else "not among the given descriptions"


@dataclass
class IndexThenRegistry:
    """The local index, else the image's label in its registry."""

    debug: Callable[[str], None] = lambda _m: None
    pull: bool = True  # False: the local index only (`--no-pull`)

    def find(self, image: str) -> Found | str:
        from veil.image.index import LocalIndex

        entry = LocalIndex().get(image)
        if entry is not None:
            origins: Mapping[str, Origin] = {}
            if entry.source and Path(entry.source).is_file():
                # if the manifest no longer loads, the index still holds what was recorded
                with contextlib.suppress(VeilError):
                    origins = origins_of_service(load_genservice(entry.source))
            return Found(entry.description, entry.digest, origins)
        if not self.pull:
            return "not in the local index, and from the registry: not asked (--no-pull)"
        self.debug(f"{image}: not in the local index; asking its registry")
        from veil.image.describe import described_in_registry  # httpx: load when needed

        try:
            description, digest = described_in_registry(image)
            return Found(description, digest)
        except VeilError as err:
            return f"not in the local index, and from the registry: {err.message}"


def descriptions_for(doc: Loaded, lookup: Descriptions) -> dict[str, Found]:
    """Each image of the mesh's services, found; every image found nowhere is reported at
    once, with what the lookup said and how to record it."""
    mesh: Mesh = doc.model
    found: dict[str, Found] = {}
    problems: list[Problem] = []
    missing: set[str] = set()
    for i, s in enumerate(mesh.services):
        if s.image in found or s.image in missing:
            continue
        result = lookup.find(s.image)
        if isinstance(result, Found):
            found[s.image] = result
            continue
        missing.add(s.image)
        problems.append(doc.positions.problem(
            f"service `{s.name}`: no service description for image {s.image}: {result}",
            ("services", i, "image"), value=s.image,
            allowed="an image built and pushed by `veil apply -f <service.yaml>`, or "
            "recorded by `veil apply -f <service.yaml> --dry-run`"))
    if problems:
        raise ManifestError(problems, summary=f"{len(problems)} image"
                            f"{'s' if len(problems) != 1 else ''} of {doc.file} not known")
    return found
