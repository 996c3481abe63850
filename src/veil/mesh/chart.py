"""The Helm chart of an applied mesh (filled in by the chart generator, `veil.deploy.chart`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veil.mesh.apply import MeshOptions, MeshResult, Progress

__all__ = ["write_chart"]


def write_chart(result: MeshResult, options: MeshOptions, say: Progress) -> None:
    """Not written yet by this version."""
