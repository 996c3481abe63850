"""Helpers the mesh commands share: service descriptions from the local index, warnings."""

from __future__ import annotations

import contextlib
from pathlib import Path

from veil.cli._app import state
from veil.errors import ManifestError, Problem, VeilError
from veil.image.index import LocalIndex
from veil.manifest.description import ServiceDescription
from veil.manifest.load import Loaded, load_genservice
from veil.manifest.models import Mesh
from veil.resolve.env import Origin, origins_of_service

__all__ = ["descriptions_for", "print_warnings"]


def print_warnings(problems: list[Problem]) -> None:
    for w in problems:
        state.err.print(w.render(), style="yellow", soft_wrap=True, markup=False)


def descriptions_for(doc: Loaded) -> tuple[dict[str, ServiceDescription],
                                           dict[str, dict[str, Origin]]]:
    """Each image's description (local index), and file:line of its values where known.

    Every image without a description is reported at once, with how to record it.
    """
    mesh: Mesh = doc.model
    index = LocalIndex()
    found: dict[str, ServiceDescription] = {}
    origins: dict[str, dict[str, Origin]] = {}
    problems: list[Problem] = []
    for i, s in enumerate(mesh.services):
        if s.image in found:
            continue
        entry = index.get(s.image)
        if entry is None:
            problems.append(doc.positions.problem(
                f"service `{s.name}`: no service description for image {s.image}",
                ("services", i, "image"), value=s.image,
                allowed="an image whose manifest was applied: run "
                "`veil apply -f <service.yaml> --dry-run` first"))
            continue
        found[s.image] = entry.description
        if entry.source and Path(entry.source).is_file():
            # if the manifest no longer loads, the index still holds what was recorded
            with contextlib.suppress(VeilError):
                origins[s.image] = origins_of_service(load_genservice(entry.source))
    if problems:
        raise ManifestError(problems, summary=f"{len(problems)} image"
                            f"{'s' if len(problems) != 1 else ''} of {doc.file} not known")
    return found, origins
