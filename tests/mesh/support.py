"""Meshes and service descriptions held in memory: the cases under tests/golden/mesh/."""

from __future__ import annotations

import hashlib
from pathlib import Path

from veil.manifest.description import ServiceDescription
from veil.manifest.load import Loaded, load_genservice, load_mesh
from veil.mesh.descriptions import InMemory

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mesh"


def measurement(image: str) -> str:
    return hashlib.sha256(b"measurement of " + image.encode()).hexdigest()


def digest(image: str) -> str:
    return "sha256:" + hashlib.sha256(b"manifest of " + image.encode()).hexdigest()


def descriptions(services: Path) -> InMemory:
    """Every services/*.yaml as if built: a measurement and a pushed digest of its own."""
    by_image: dict[str, ServiceDescription] = {}
    for f in sorted(services.glob("*.yaml")):
        d = ServiceDescription.from_genservice(load_genservice(f).model)
        by_image[d.image] = d.model_copy(update={"measurement": measurement(d.image)})
    return InMemory(by_image, {i: digest(i) for i in by_image})


def case(name: str) -> tuple[Loaded, InMemory]:
    root = GOLDEN / name
    return load_mesh(root / "mesh.yaml"), descriptions(root / "services")
