"""`veil apply -f service.yaml`: the genservice path of `apply`.

Today this validates the manifest and records its service description in the local index (keyed
by `build.to`), which is all a mesh needs to be resolved. Building and pushing the image is the
job of `veil.image`; without --dry-run this says so instead of pretending.
"""

from __future__ import annotations

from pathlib import Path

from veil.cli._app import state
from veil.cli._options import ApplyOptions
from veil.errors import OperationalError
from veil.image.index import IndexEntry, LocalIndex
from veil.manifest.description import ServiceDescription
from veil.manifest.models import GenService

__all__ = ["apply_service"]


def apply_service(path: Path, service: GenService, options: ApplyOptions) -> ServiceDescription:
    desc = ServiceDescription.from_genservice(service)
    LocalIndex().put(IndexEntry(image=desc.image, description=desc, source=str(path)))
    b = service.build
    out = state.console
    out.print(f"service [bold]{b.name}[/bold] ({path})")
    out.print(f"  image        {b.to}")
    out.print(f"  command      {b.command}  (pwd {b.pwd})")
    out.print(f"  local env    {', '.join(v.name for v in desc.local_env) or '-'}")
    out.print(f"  global env   {', '.join(v.name for v in desc.global_env) or '-'}")
    out.print(f"  secrets      {', '.join(s.name for s in desc.secrets) or '-'}")
    out.print(f"  mode         {options.mode}")
    out.print("  recorded the service description in the local index")
    if options.dry_run:
        out.print(f"  dry run: would build {options.target / b.name} and "
                  f"{'push' if options.push else 'keep locally'} {b.to}")
        return desc
    raise OperationalError(
        f"building the image {b.to} needs veil.image, which this command does not call yet",
        hint="use --dry-run to validate the manifest and record its description",
    )
