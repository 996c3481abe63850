"""Copying an image to another registry by digest, through the registry API (no pull, no
daemon): every blob, then the manifest's exact bytes, so the copy has the same digest and so
the same measurement-bound identity."""

from __future__ import annotations

import json

from veil.errors import OperationalError
from veil.image.reference import parse_reference
from veil.image.registry import Registry

__all__ = ["copy_image", "destination_of"]


def destination_of(image: str, destination: str) -> str:
    """`reg.example/team/app:1` with destination `mirror.example/prod` →
    `mirror.example/prod/app:1` (the last path component and the tag are kept)."""
    ref = parse_reference(image)
    base = ref.repository.rsplit("/", 1)[-1]
    return f"{destination.rstrip('/')}/{base}:{ref.tag or 'latest'}"


def _copy_manifest(src: Registry, dst: Registry, reference: str, tag: str | None) -> str:
    digest, body, media = src.manifest_raw(reference)
    man = json.loads(body)
    for child in man.get("manifests", []):  # an index: every platform's manifest first
        _copy_manifest(src, dst, child["digest"], None)
    for d in [man["config"]["digest"]] if "config" in man else []:
        if not dst.has_blob(d):
            dst.put_blob(src.blob(d))
    for layer in man.get("layers", []):
        if not dst.has_blob(layer["digest"]):
            dst.put_blob(src.blob(layer["digest"]))
    dst.put_manifest_raw(digest, body, media)
    if tag:
        dst.put_manifest_raw(tag, body, media)
    return digest


def copy_image(image: str, destination: str, digest: str | None = None) -> str:
    """Copy `image` (at `digest` when given) to `destination`; returns `repo@digest` of the
    copy. The copy must have the digest of the source: anything else is refused."""
    src_ref = parse_reference(image)
    target = destination_of(image, destination)
    dst_ref = parse_reference(target)
    with Registry(src_ref) as src, Registry(dst_ref) as dst:
        got = _copy_manifest(src, dst, digest or src_ref.reference, dst_ref.tag)
    if digest and got != digest:
        raise OperationalError(f"copying {image}: the registry served {got}, not {digest}")
    return f"{dst_ref.name}@{got}"
