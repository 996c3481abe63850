"""Finding an image's service description: the registry's label, else the local index."""

from __future__ import annotations

from veil.errors import OperationalError, UserError
from veil.image.index import LocalIndex
from veil.image.reference import parse_reference
from veil.image.registry import Registry
from veil.manifest.description import LABEL_KEY, ServiceDescription

__all__ = ["described_in_registry", "description_from_registry", "description_of"]


def description_from_registry(image: str) -> ServiceDescription:
    return described_in_registry(image)[0]


def described_in_registry(image: str) -> tuple[ServiceDescription, str]:
    """The description in the image's label and the digest of the manifest it was read from
    (one read: a tag that moves meanwhile cannot pair one image's label with another's digest)."""
    ref = parse_reference(image)
    with Registry(ref) as reg:
        digest, config = reg.config()
    labels = (config.get("config") or {}).get("Labels") or {}
    text = labels.get(LABEL_KEY)
    if not text:
        raise UserError(
            f"{image} carries no service description (label {LABEL_KEY})",
            hint="build it with `veil apply -f service.yaml`",
        )
    try:
        return ServiceDescription.from_json(text), digest
    except ValueError:  # malformed JSON or a description of another schema
        raise OperationalError(
            f"the service description label of {image} is malformed",
            hint="rebuild the image with `veil apply -f service.yaml`",
        ) from None


def description_of(image: str, *, local_only: bool = False) -> ServiceDescription:
    if not local_only:
        try:
            return description_from_registry(image)
        except OperationalError:
            entry = LocalIndex().get(image)
            if entry is None:
                raise
            return entry.description
    entry = LocalIndex().get(image)
    if entry is None:
        raise UserError(f"{image} is not in the local index", hint="build it with `veil apply`")
    return entry.description
