"""Options of `veil apply`, shared by the genservice and the mesh paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ApplyOptions", "Mode", "Output"]

Mode = Literal["debug", "production"]
Output = Literal["helm_chart", "yaml"]


@dataclass(frozen=True)
class ApplyOptions:
    dry_run: bool = False
    mode: Mode = "production"
    target: Path = Path("target")
    push: bool = True
    verbose: int = 0
    release: str | None = None
    output: Output = "helm_chart"
