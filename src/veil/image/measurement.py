"""The measurement of a built image: its root filesystem mounted, measured by the launcher's code.

The image is mounted through a buildah working container (`buildah from` + `buildah mount`,
which needs root, as buildah's overlay storage does here) and measured with
`veil.runtime.measure` — the same function the launcher runs on the container's `/` at start,
so the two values agree by construction; the e2e tests check that they do.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from veil.errors import OperationalError, UserError
from veil.image.tools import run_tool
from veil.runtime.measure import (
    RUNTIME_PATHS,
    Entry,
    MeasurementError,
    MeasurementPlan,
    digest_of,
    scan,
)

__all__ = ["MeasuredImage", "measure_image", "mounted_image"]


@dataclass(frozen=True)
class MeasuredImage:
    digest: str
    entries: list[Entry]


@contextmanager
def mounted_image(image: str, what: str) -> Iterator[str]:
    """The root filesystem of the locally stored `image` (name or id), mounted for reading."""
    cid = run_tool(["buildah", "from", "--pull-never", "--quiet", image],
                   what=what).stdout.decode().strip()
    try:
        yield run_tool(["buildah", "mount", cid], what=what,
                       hint="mounting an image needs root (or `buildah unshare`)"
                       ).stdout.decode().strip()
    finally:
        run_tool(["buildah", "rm", cid], what=what)


def measure_image(image: str, plan: MeasurementPlan) -> MeasuredImage:
    """Measure the built `image` under `plan` (the plan the image itself carries)."""
    what = f"measuring the image {image.removeprefix('sha256:')[:12]}"
    with mounted_image(image, what) as root:
        for target in sorted(set(plan.exclude) - set(RUNTIME_PATHS) - set(plan.host_paths)):
            host = os.path.join(root, target.lstrip("/"))
            if os.path.isdir(host) and not os.path.islink(host):
                # its whole subtree would go unmeasured; the launcher could not write it anyway
                raise UserError(
                    f"the injection file {target} is a folder in the built image",
                    hint="name a file path in injection_files, e.g. "
                    f"{posixpath.join(target, 'app.conf')}",
                )
        try:
            entries = scan(root, plan)
        except MeasurementError as err:
            raise OperationalError(f"{what}: {err}") from None
    return MeasuredImage(digest_of(entries, plan), entries)
