"""`veil apply -f service.yaml`: the genservice path of `apply`.

Builds the service's image with `veil.image` (build context under `target/<name>/`, buildah,
measurement, push to `build.to`, signature when asked) and records its service description in the
local index. `--dry-run` writes the context and the description only; `--no-push` keeps the image
in local storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from veil.cli._app import state
from veil.cli._options import ApplyOptions

if TYPE_CHECKING:
    from veil.manifest.description import ServiceDescription
    from veil.manifest.load import Positions
    from veil.manifest.models import GenService

__all__ = ["apply_service"]


def apply_service(
    path: Path, service: GenService, options: ApplyOptions, positions: Positions | None = None
) -> ServiceDescription:
    from veil.image.builder import build_service  # buildah & registry code: load when used

    b = service.build

    def say(line: str) -> None:
        state.console.print(line, soft_wrap=True)

    with state.err.status(f"building {b.to}") as status:
        result = build_service(
            service, path, target=options.target, push=options.push, dry_run=options.dry_run,
            positions=positions, progress=lambda m: status.update(m),
        )
    desc = result.description
    say(f"service [bold]{b.name}[/bold] ({path})")
    say(f"  context      {result.context}")
    say(f"  measurement  {desc.measurement}")
    if options.dry_run:
        say("  dry run: wrote the build context and the service description; built nothing")
    elif result.digest:
        say(f"  image        {b.to}@{result.digest}")
        if result.fast:
            say("  only application files changed: pushed their layer without a build")
        if result.signature:
            say(f"  signature    {result.signature}")
    else:
        say(f"  image        {b.to} ({result.image_id}, local only: not pushed)")
    return desc
