"""`build.wrap` in a genservice: the service as its wrapper makes it.

A manifest that says `wrap: flask|kafka` and `entrypoint: module:callable` names a bare customer
repository (the manifest's folder). Before staging, the wrapper's context is generated into a
scratch folder (`veil.wrap.prepare_context`: entrypoint checked, runner added, requirements
merged) and the manifest is completed from it: the runner's command, `VEIL_ENTRYPOINT` as a
fixed (`local`) variable, and every variable the wrapper reads declared as a `global` input with
its default — so `--print-defaults` and the pre-deploy check list them. The image is then built
from that folder like any other service, and measured as such.
"""

from __future__ import annotations

from pathlib import Path

from veil.manifest.models import Build, Environment, EnvVar, GenService, GlobalEnvVar
from veil.wrap import RUNNER_PACKAGE, prepare_context

__all__ = ["wrapped_service"]


def wrapped_service(svc: GenService, source_dir: Path, scratch: Path) -> tuple[GenService, Path]:
    """Write the wrapped context under `scratch`; return the completed service and its folder."""
    b = svc.build
    assert b.wrap is not None and b.entrypoint is not None  # the model guarantees both
    folder = scratch / "context"
    result = prepare_context(
        source_dir, b.wrap, b.entrypoint, folder,
        base_image=b.from_, requirements=b.requirements or "requirements.txt",
    )
    local = [e for e in svc.environment.local if e.name != "VEIL_ENTRYPOINT"]
    local.append(EnvVar(name="VEIL_ENTRYPOINT", value=b.entrypoint))
    declared = {e.name for e in local} | {e.name for e in svc.environment.global_}
    inputs = list(svc.environment.global_) + [
        GlobalEnvVar(name=v.name, value=v.default)
        for v in result.env if v.name not in declared
    ]
    # The manifest's own `copy` list, if any, limits what of the repository goes in.
    files = list(b.copy_) if b.copy_ else list(result.files)
    copy = [*dict.fromkeys(f for f in files if f.rstrip("/") != RUNNER_PACKAGE), RUNNER_PACKAGE]
    build = Build.model_validate({
        **b.model_dump(by_alias=True),
        "command": b.command or result.command_line,
        "requirements": "requirements.txt",
        "copy": copy,
    })
    completed = svc.model_copy(update={
        "build": build,
        "environment": Environment.model_validate(
            {"local": [e.model_dump() for e in local],
             "global": [e.model_dump() for e in inputs]}
        ),
    })
    return completed, folder
