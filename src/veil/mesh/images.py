"""The mesh's `repo` section: copy every service image to `repo.destination` by digest (the
registry API), and sign the copies with `repo.signature` (a cosign key file, or a PEM key;
relative to the mesh file) in cosign's format. The chart then runs the copies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from veil.image.reference import parse_reference
from veil.manifest.load import Loaded
from veil.manifest.models import Mesh

if TYPE_CHECKING:
    from veil.mesh.apply import MeshResult, Progress

__all__ = ["check_key", "publish"]


def _key_path(doc: Loaded, name: str) -> Path:
    p = Path(name)
    if p.is_absolute():
        return p
    base = Path(doc.file).parent if doc.file not in ("<stdin>", "<input>") else Path(".")
    return base / p


def check_key(doc: Loaded) -> None:
    mesh: Mesh = doc.model
    if mesh.repo is not None and mesh.repo.signature:
        from veil.image.signing import signing_key

        signing_key(_key_path(doc, mesh.repo.signature))


def publish(doc: Loaded, result: MeshResult, *, dry_run: bool, say: Progress) -> None:
    """Point `result.images` at the copies; copy and sign them unless `dry_run`."""
    mesh: Mesh = doc.model
    if mesh.repo is None:
        return
    from veil.image.copy import copy_image, destination_of

    done: dict[str, str] = {}
    for s in mesh.services:
        source = result.images[s.name]
        if source in done:
            result.images[s.name] = done[source]
            continue
        ref = parse_reference(source)
        tagged = s.image if ref.digest else source
        if dry_run:
            dest = parse_reference(destination_of(tagged, mesh.repo.destination))
            copy = f"{dest.name}@{ref.digest}" if ref.digest else str(dest)
        else:
            say("copy", f"copying {s.image} to {mesh.repo.destination}")
            copy = copy_image(s.image, mesh.repo.destination, ref.digest)
            if mesh.repo.signature:
                from veil.image.signing import sign_image

                say("sign", f"signing {copy}")
                digest = copy.partition("@")[2]
                result.signatures.append(
                    sign_image(copy, digest, _key_path(doc, mesh.repo.signature)))
        done[source] = copy
        result.images[s.name] = copy
