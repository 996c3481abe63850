"""Helpers the mesh commands share: each service's description (local index, else the image's
label in its registry), warnings."""

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


def _from_registry(image: str) -> tuple[ServiceDescription | None, str]:
    """The description in the image's label, or why there is none (registry error, no label)."""
    from veil.image.describe import description_from_registry  # httpx: load when needed

    try:
        return description_from_registry(image), ""
    except VeilError as err:
        return None, err.message


def descriptions_for(doc: Loaded, *, pull: bool = True) -> tuple[
        dict[str, ServiceDescription], dict[str, dict[str, Origin]]]:
    """Each image's description, and file:line of its values where known.

    The local index first (`veil apply`, also --dry-run, records there), then the label of the
    image in its registry. Every image found in neither place is reported at once, with what
    each place said and how to record it.
    """
    mesh: Mesh = doc.model
    index = LocalIndex()
    found: dict[str, ServiceDescription] = {}
    origins: dict[str, dict[str, Origin]] = {}
    problems: list[Problem] = []
    missing: set[str] = set()
    for i, s in enumerate(mesh.services):
        if s.image in found or s.image in missing:
            continue
        entry = index.get(s.image)
        if entry is None:
            if pull:
                state.debug(f"{s.image}: not in the local index; asking its registry")
                description, why = _from_registry(s.image)
            else:
                description, why = None, "not asked (--no-pull)"
            if description is not None:
                found[s.image] = description
                continue
            missing.add(s.image)
            problems.append(doc.positions.problem(
                f"service `{s.name}`: no service description for image {s.image}: not in the "
                f"local index, and from the registry: {why}",
                ("services", i, "image"), value=s.image,
                allowed="an image built and pushed by `veil apply -f <service.yaml>`, or "
                "recorded by `veil apply -f <service.yaml> --dry-run`"))
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
