"""`veil apply -f service.yaml --dry-run`: the build context and the service description, with
no container engine, registry or network.

What only the base image can tell — its digest, its Python (so the requirements' wheels), and
therefore the measurement — stays empty (`None`) in the description and is taken by the real
build. A mesh can be resolved, checked and printed from such a description, not deployed.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.fsutil import replace_dir
from veil.image.context import check_target, stage_context
from veil.image.index import IndexEntry, LocalIndex
from veil.image.inputs import WorkDir
from veil.image.reference import default_base, parse_reference
from veil.manifest.description import ServiceDescription
from veil.manifest.load import Positions
from veil.manifest.models import GenService

__all__ = ["Recorded", "describe_service", "record_service", "write_description"]

_DRY_RUN_NOTE = """\
# Written by `veil apply --dry-run`: not for building. The base image is not pinned and the
# requirements are not resolved; `veil apply` without --dry-run completes both and measures the
# built image.
"""


@dataclass(frozen=True)
class Recorded:
    context: Path
    description: ServiceDescription
    notes: list[str] = field(default_factory=list)  # warnings for the user


def write_description(ctx_dir: Path, desc: ServiceDescription) -> None:
    (ctx_dir / "description.json").write_text(
        json.dumps(json.loads(desc.to_json()), indent=2, sort_keys=True) + "\n"
    )


def describe_service(
    svc: GenService, manifest: Path, *, target: Path, positions: Positions | None = None,
    workdir: WorkDir | None = None, record: dict[str, Any] | None = None,
) -> Recorded:
    """The dry run of `veil apply` for a service manifest (wrapped services included);
    `workdir` and `record` as for `veil.image.builder.build_service`."""
    parse_reference(svc.build.to, field="build.to")
    check_target(target / svc.build.name)
    with tempfile.TemporaryDirectory(prefix="veil-wrap-") as scratch:
        source = manifest.parent
        if svc.build.wrap is not None:
            from veil.image.wrapped import wrapped_service

            svc, source = wrapped_service(svc, source, Path(scratch))
            positions = None  # the copy list is generated; positions would point elsewhere
            workdir = None  # ... and names files of the generated folder
        return record_service(svc, manifest, source, target=target, positions=positions,
                              workdir=workdir, record=record)


def _stable(image: str, notes: list[str]) -> dict[str, Any]:
    """`build.stable` from the local index only: a dry run asks no registry."""
    from veil.manifest.description import StableImage

    entry = LocalIndex().get(image)
    if entry is None or not entry.description.measurement:
        notes.append(f"build.stable {image}: not in the local index with a measurement; a dry "
                     "run asks no registry, the build reads it there")
        return {}
    return {"stable": StableImage(image=image, measurement=entry.description.measurement,
                                  digest=entry.digest)}


def record_service(
    svc: GenService, manifest: Path, source: Path, *, target: Path,
    positions: Positions | None, workdir: WorkDir | None = None,
    record: dict[str, Any] | None = None,
) -> Recorded:
    """Stage the context without the base image and record the description.

    The Containerfile names the base unpinned; requirements are listed, not resolved;
    `build.stable` is read from the local index when it is there, else at build time. An index
    entry that describes a built image of the same manifest is kept: a dry run changes no image,
    and that entry holds the measurement a mesh needs.
    """
    b = svc.build
    ctx_dir = target / b.name
    base = b.from_ or default_base(b.kind)
    notes: list[str] = []
    extra = {**(record or {}), **(_stable(b.stable, notes) if b.stable else {})}
    with replace_dir(ctx_dir) as tmp:
        ctx = stage_context(
            svc, source, tmp, base=base, site_packages=None, requirements_dir=None,
            positions=positions, workdir=workdir,
        )
        with (tmp / "Containerfile").open("a") as f:
            f.write(_DRY_RUN_NOTE)
        desc = ServiceDescription.from_genservice(svc).model_copy(update={
            "measurement": None, "base_image": base, "base_digest": None, **extra,
        })
        write_description(tmp, desc)
    index = LocalIndex()
    built = index.get(b.to)
    if not (built is not None and built.digest and built.description.measurement
            and built.description.manifest_digest == desc.manifest_digest):
        index.put(IndexEntry(image=b.to, description=desc, source=str(manifest)))
    return Recorded(context=ctx_dir, description=desc, notes=notes + ctx.notes)
