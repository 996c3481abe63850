"""`veil apply -f service.yaml`: the genservice path of `apply`.

Builds the service's image with `veil.image` (build context under `target/<name>/`, buildah,
measurement, push to `build.to`, signature when asked) and records its service description in the
local index. `--dry-run` writes the context and the description only; `--no-push` keeps the image
in local storage. As in sconectl, `copy`/`requirements` entries and `--helm-template` are read
relative to the current directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.cli._app import state
from veil.cli._options import ApplyOptions
from veil.errors import ManifestError

if TYPE_CHECKING:
    from veil.manifest.description import ServiceDescription
    from veil.manifest.load import Positions
    from veil.manifest.models import GenService

__all__ = ["apply_service"]


def _java_kind(path: Path, service: GenService, positions: Positions | None) -> str | None:
    """A Java kind Veil has no base for is refused (Java 8, without a base in `build.from`);
    an -ubuntu kind is built on the Debian base: the warning that says so, or None."""
    from veil.errors import Problem
    from veil.image.reference import JAVA_KINDS, java_version

    kind = service.build.kind
    version = java_version(kind)
    if version is None or service.build.from_:
        return None
    if kind not in JAVA_KINDS:
        why = (f"build.kind {kind}: Veil has no Java {version} base: no Java {version} runtime "
               "is packaged where its bases come from (Debian bookworm: JRE 17; the JRE wheels "
               "on PyPI: 11 and later). Use java11, java17 or java21 (they run Java 8 jars), or "
               f"name a base image with a Java {version} runtime in build.from")
        allowed = "python, java, java11, java17, java21 (each also -glibc, -ubuntu)"
        problem = (positions.problem(why, ("build", "kind"), value=kind, allowed=allowed)
                   if positions is not None else
                   Problem(why, file=str(path), path="build.kind", value=kind, allowed=allowed))
        raise ManifestError([problem], summary=f"cannot build {path}")
    if kind.endswith("-ubuntu"):
        return (f"build.kind {kind}: Veil makes no Ubuntu base (`veil base create` bootstraps "
                f"Debian); built on the Debian bookworm base with Java {version} (glibc, as "
                f"on Ubuntu) instead")
    return None


def apply_service(
    path: Path, service: GenService, options: ApplyOptions, positions: Positions | None = None
) -> ServiceDescription:
    ubuntu = _java_kind(path, service, positions)
    if ubuntu:
        state.warn(ubuntu)
    b = service.build
    record: dict[str, Any] = {}
    if options.set_version is not None:
        record["version"] = options.set_version
    if options.helm_template is not None:
        from veil.image.helmtemplate import read_helm_template

        record["helm_template"] = read_helm_template(options.helm_template, path.parent)

    def say(line: str) -> None:
        state.console.print(line, soft_wrap=True)

    from veil.image.inputs import WorkDir

    # sconectl reads paths in the current directory only; `veil` also beside the manifest
    workdir = WorkDir(Path.cwd(), beside_manifest=state.prog != "sconectl")

    result: Any
    if options.dry_run:  # no buildah, registry or network: only what the manifest tells
        from veil.image.dryrun import describe_service

        result = describe_service(service, path, target=options.target, positions=positions,
                                  workdir=workdir, record=record)
    else:
        from veil.image.builder import build_service  # buildah & registry code: load when used

        with state.status(f"building {b.to}") as status:
            result = build_service(
                service, path, target=options.target, push=options.push, dry_run=False,
                positions=positions, progress=lambda m: status.update(m), workdir=workdir,
                record=record,
            )
    for note in result.notes:
        state.warn(note)
    desc: ServiceDescription = result.description
    if desc.host_paths and options.mode == "production":
        state.warn(f"build.host_paths {', '.join(desc.host_paths)}: read from the host at run "
                   "time, outside the measurement: attestation says nothing about them")
    say(f"service [bold]{b.name}[/bold] ({path})")
    say(f"  context      {result.context}")
    say(f"  measurement  {desc.measurement or 'taken at build time (needs the base image)'}")
    if desc.host_paths:
        say(f"  not measured {', '.join(desc.host_paths)} (build.host_paths, from the host)")
    if desc.stable is not None:
        say(f"  stable       {desc.stable.image} ({desc.stable.measurement}) stays accepted "
            "until an apply without build.stable")
    if desc.version is not None:
        say(f"  version      {desc.version} (--set-version, recorded)")
    if desc.helm_template:
        say(f"  helm template {options.helm_template} ({len(desc.helm_template)} files, "
            "carried with the description)")
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
