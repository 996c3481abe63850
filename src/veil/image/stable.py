"""`build.stable: IMAGE`: sconectl's rolling update.

The image deployed now (IMAGE) keeps being accepted beside the one being built: its measurement
is recorded in the new image's description, and the session derived from it accepts both. The
next apply without `stable` records nothing, and the old measurement is no longer accepted.
The measurement comes from IMAGE's own description: the local index, else its registry label.
"""

from __future__ import annotations

from veil.errors import OperationalError, UserError, VeilError
from veil.manifest.description import StableImage

__all__ = ["stable_image"]


def stable_image(image: str, building: str) -> StableImage:
    from veil.image.index import LocalIndex

    if image == building:
        raise UserError(f"build.stable {image} is the image being built (build.to); name the "
                        "image deployed now")
    entry = LocalIndex().get(image)
    if entry is not None and entry.description.measurement:
        return StableImage(image=image, measurement=entry.description.measurement,
                           digest=entry.digest)
    from veil.image.describe import description_from_registry  # httpx: load when needed

    try:
        desc = description_from_registry(image)
    except VeilError as err:
        raise OperationalError(
            f"build.stable {image}: its measurement is neither in the local index nor "
            f"readable from its registry ({err.message})",
            hint="name an image built by `veil apply -f service.yaml`, the one deployed now") \
            from None
    if not desc.measurement:
        raise OperationalError(f"build.stable {image}: its description holds no measurement "
                               "(recorded by a dry run?)")
    return StableImage(image=image, measurement=desc.measurement)
