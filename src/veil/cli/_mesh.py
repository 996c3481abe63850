"""Helpers the mesh commands share: each service's description (the use case's lookup, see
`veil.mesh.descriptions`), warnings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.cli._app import state
from veil.errors import Problem

if TYPE_CHECKING:  # not loaded by a service's `apply --dry-run` (start-up time)
    from veil.manifest.description import ServiceDescription
    from veil.manifest.load import Loaded
    from veil.resolve.env import Origin

__all__ = ["descriptions_for", "print_warnings"]


def print_warnings(problems: list[Problem]) -> None:
    for w in problems:
        state.err.print(w.render(), style="yellow", soft_wrap=True, markup=False)


def descriptions_for(doc: Loaded, *, pull: bool = True) -> tuple[
        dict[str, ServiceDescription], dict[str, dict[str, Origin]]]:
    """Each image's description, and file:line of its values where known (`pull=False`: the
    local index only, never a registry)."""
    # the mesh use case loads CAS and registry clients: not for a service's `apply --dry-run`
    from veil.mesh.descriptions import IndexThenRegistry
    from veil.mesh.descriptions import descriptions_for as _lookup

    found = _lookup(doc, IndexThenRegistry(debug=state.debug, pull=pull))
    return ({image: f.description for image, f in found.items()},
            {image: dict(f.origins) for image, f in found.items() if f.origins})
