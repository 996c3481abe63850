"""genservice → build context → OCI image → registry: the whole build as one readable function.

    resolve the base image (pull if needed; pin its digest; read its interpreter)
    resolve requirements on the host
    stage the context in a fresh directory
    buildah build (overlay storage, chroot isolation, layer cache) → measure the built root
    filesystem → add the description (with the measurement) as a label → push → sign → index

The target directory is replaced only when everything up to the build succeeded, so a failed
build leaves the previous context untouched and no half-written one.

`--dry-run` is `veil.image.dryrun`: the context and the description without the base image.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.errors import OperationalError
from veil.fsutil import replace_dir
from veil.image.base import default_base
from veil.image.context import check_target, stage_context
from veil.image.dryrun import record_service, write_description
from veil.image.fastpath import fast_measurement, forget_build, record_build, try_fast_push
from veil.image.index import IndexEntry, LocalIndex
from veil.image.inputs import WorkDir, locate_input
from veil.image.interpreter import Interpreter, interpreter_of_image
from veil.image.jvm import Jvm, jvm_of_image
from veil.image.measurement import measure_image
from veil.image.push import check_registry, push_image
from veil.image.reference import java_version, parse_reference
from veil.image.requirements import install_requirements
from veil.image.runtime import RUNTIME_LABEL, RUNTIME_OF_LABEL, RUNTIME_SUFFIX, runtime_ref
from veil.image.stable import stable_image
from veil.image.tools import container_env, require, run_tool, tls_flag
from veil.image.wrapped import wrapped_service
from veil.manifest.description import LABEL_KEY, ServiceDescription
from veil.manifest.load import Positions
from veil.manifest.models import GenService

__all__ = ["BaseImage", "BuildResult", "build_service", "resolve_base", "resolve_runtime_base"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    name: str
    image_id: str
    digest: str | None
    interpreter: Interpreter
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def pinned(self) -> str:
        return f"{self.name.split('@')[0]}@{self.digest}" if self.digest else self.image_id


@dataclass
class BuildResult:
    image: str
    context: Path
    description: ServiceDescription
    image_id: str | None = None
    digest: str | None = None  # registry manifest digest once pushed
    signature: str | None = None  # tag of the signature artifact
    fast: bool = False  # pushed by writing the application layer directly (no buildah run)
    notes: list[str] = field(default_factory=list)  # warnings for the user (one line each)


def _inspect(name: str) -> dict[str, Any] | None:
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", name], capture_output=True,
        env=container_env(), check=False,
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def resolve_base(name: str, progress: Progress, kind: str = "python") -> BaseImage:
    require("buildah")
    version = java_version(kind)
    flavour = f"java --version {version}" if version else "python"
    info = _inspect(name)
    if info is None:
        progress(f"pulling base image {name}")
        run_tool(
            ["buildah", "pull", "--quiet", *tls_flag(name), name],
            what=f"the base image {name} cannot be pulled",
            hint=f"push one there with `veil base create {flavour} --to {name}`, or name an "
            f"existing {'Java' if version else 'Python'} image in build.from",
        )
        info = _inspect(name)
        if info is None:
            raise OperationalError(f"the base image {name} was pulled but cannot be inspected")
    labels = ((info.get("OCIv1") or {}).get("config") or {}).get("Labels") or {}
    image_id = str(info["FromImageID"])
    digest = info.get("FromImageDigest") or None
    return BaseImage(name, image_id, digest, interpreter_of_image(image_id, labels),
                     dict(labels))


def resolve_runtime_base(base: BaseImage, progress: Progress) -> BaseImage | None:
    """The runtime base published beside the build base `base` (`veil base create python`
    makes both), or None when `base` names none: then the service runs on `base` itself."""
    ref = runtime_ref(base.name) if base.labels.get(RUNTIME_LABEL) == RUNTIME_SUFFIX else None
    if ref is None:
        return None
    try:
        runtime = resolve_base(ref, progress)
    except OperationalError as err:
        raise OperationalError(
            f"the build base {base.name} names its runtime base {ref}, which cannot be read:\n"
            f"{err.message}",
            hint=f"`veil base create python --to {base.name}` pushes the two together") from None
    if runtime.labels.get(RUNTIME_OF_LABEL) != base.labels.get(RUNTIME_OF_LABEL):
        raise OperationalError(
            f"the runtime base {ref} was not made from the root filesystem of the build base "
            f"{base.name}",
            hint="make both again with `veil base create python --to "
            f"{base.name}` (it pushes the two together)")
    return runtime


def _check_jvm(kind: str, base: BaseImage, jvm: Jvm) -> None:
    """A kind that names a Java version (`java21`) is built only on a runtime of that version;
    `java` alone takes the base's."""
    named = kind.removeprefix("java").split("-", 1)[0]
    if named and jvm.major and jvm.major != named:
        raise OperationalError(
            f"build.kind {kind} needs Java {named}; the base image {base.name} holds Java "
            f"{jvm.version} ({jvm.home})",
            hint=f"build on `veil base create java --version {named}`, or set build.kind to "
            f"java{jvm.major}")


def _buildah_build(ctx: Path, image: str, progress: Progress) -> str:
    """Build the context's Containerfile; the id of the (untagged, unlabelled) image."""
    iidfile = ctx.parent / f".{ctx.name}.iid"
    cmd = [
        "buildah", "build", "--isolation", "chroot", "--layers", "--pull-never", "--quiet=false",
        "--timestamp", "0", "-f", str(ctx / "Containerfile"), "--iidfile", str(iidfile),
        str(ctx),
    ]
    last: deque[str] = deque(maxlen=25)
    step = ""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=container_env(), text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        last.append(line)
        # a build of two stages says `[1/2] STEP 1/3: ...`
        if line.startswith("[") and "] STEP " in line:
            line = line.split("] ", 1)[1]
        if line.startswith("STEP "):
            step = line
            progress(line)
    rc = proc.wait()
    if rc != 0:
        output = "\n".join("  " + ln for ln in last)
        if step and ": RUN " in step:
            raise OperationalError(
                f"the build step `{step.split(': ', 1)[1]}` of {image} failed:\n{output}",
                hint="fix the command in build.run (it runs without network access, after the "
                "application files are copied, as in sconectl)",
            )
        hint = None
        if "overlay" in output.lower():
            hint = ("overlay storage is not usable here; point CONTAINERS_STORAGE_CONF at a "
                    "storage.conf with driver \"vfs\" (works everywhere, 10-25x slower)")
        raise OperationalError(f"building {image} failed at {step or 'start'}:\n{output}",
                               hint=hint)
    image_id = iidfile.read_text().strip()
    iidfile.unlink()
    return image_id


def _labelled(built: str, image: str, label: str) -> str:
    """Tag `built` as `image` with the description label: a config-only step, so the root
    filesystem (and with it the measurement) stays the one that was measured."""
    with tempfile.TemporaryDirectory(prefix="veil-label-") as tmp:
        (Path(tmp) / "Containerfile").write_text(f"FROM {built}\n")
        iidfile = Path(tmp) / "iid"
        run_tool(
            ["buildah", "build", "--isolation", "chroot", "--layers", "--pull-never", "--quiet",
             "--timestamp", "0", "-t", image, "--label", f"{LABEL_KEY}={label}",
             "--iidfile", str(iidfile), tmp],
            what=f"labelling {image}",
        )
        return iidfile.read_text().strip()


def build_service(
    svc: GenService,
    manifest: Path,
    *,
    target: Path,
    push: bool = True,
    dry_run: bool = False,
    positions: Positions | None = None,
    progress: Progress = lambda _m: None,
    workdir: WorkDir | None = None,
    record: dict[str, Any] | None = None,
) -> BuildResult:
    """`workdir`: where `copy`/`requirements` entries are looked up (sconectl's rule: the
    current directory; see `veil.image.inputs`), else in the manifest's folder; `record`:
    fields added to the description (the apply's `--set-version`, `--helm-template`)."""
    parse_reference(svc.build.to, field="build.to")
    check_target(target / svc.build.name)
    if push and not dry_run:
        check_registry(svc.build.to)
    with tempfile.TemporaryDirectory(prefix="veil-wrap-") as scratch:
        source = manifest.parent
        if svc.build.wrap is not None:
            progress(f"wrapping {svc.build.entrypoint} as a {svc.build.wrap} application")
            svc, source = wrapped_service(svc, source, Path(scratch))
            positions = None  # the copy list is generated; positions would point elsewhere
            workdir = None  # ... and names files of the generated folder
        return _build(svc, manifest, source, target=target, push=push, dry_run=dry_run,
                      positions=positions, progress=progress, workdir=workdir,
                      record=record or {})


def _build(
    svc: GenService,
    manifest: Path,
    source: Path,
    *,
    target: Path,
    push: bool,
    dry_run: bool,
    positions: Positions | None,
    progress: Progress,
    workdir: WorkDir | None = None,
    record: dict[str, Any] | None = None,
) -> BuildResult:
    b = svc.build
    if dry_run:
        rec = record_service(svc, manifest, source, target=target, positions=positions,
                             workdir=workdir, record=record)
        return BuildResult(image=b.to, context=rec.context, description=rec.description,
                           notes=rec.notes)
    record = dict(record or {})
    if b.stable:
        progress(f"reading the measurement of the stable image {b.stable}")
        record["stable"] = stable_image(b.stable, b.to)
    base = resolve_base(b.from_ or default_base(b.kind), progress, kind=b.kind)
    req_dir = None
    if b.requirements:
        progress(f"resolving {b.requirements} for Python {base.interpreter.version}")
        req = locate_input(b.requirements, workdir, source)
        if req.found and req.path.is_file():  # else stage_context reports it, with its line
            req_dir = install_requirements(req.path, base.interpreter.version)
    interp = base.interpreter
    if b.kind != "python":  # a Java service: the base must hold the JVM that runs it
        _check_jvm(b.kind, base, jvm_of_image(base.image_id))
    runtime = resolve_runtime_base(base, progress) if b.kind == "python" else None
    final = runtime or base
    ctx_dir = target / b.name
    with replace_dir(ctx_dir) as tmp:
        ctx = stage_context(
            svc, source, tmp, base=base.pinned, site_packages=interp.site_packages,
            requirements_dir=req_dir, positions=positions, workdir=workdir,
            runtime_base=runtime.pinned if runtime else None, python_version=interp.version,
        )
        desc = ServiceDescription.from_genservice(svc).model_copy(update={
            "base_image": final.name, "base_digest": final.digest, **record,
        })
        result = BuildResult(image=b.to, context=ctx_dir, description=desc, notes=ctx.notes)
        # with `run:` steps the application layer is not the last one: later layers were
        # made from the old files, so only a full build is right
        fast = push and not b.run and os.environ.get("VEIL_NO_FAST_PATH") != "1"
        measurement = fast_measurement(b.to, ctx) if fast else None
        if measurement is not None:
            desc = desc.model_copy(update={"measurement": measurement})
            result.digest = try_fast_push(b.to, ctx, desc)
            if result.digest:
                progress(f"pushed {b.to}: only application files changed, wrote that layer")
                result.fast = True
        if not result.digest:
            progress(f"building {b.to}")
            built = _buildah_build(tmp, b.to, progress)
            progress(f"measuring {b.to}")
            measured = measure_image(built, ctx.plan)
            desc = desc.model_copy(update={"measurement": measured.digest})
            result.image_id = _labelled(built, b.to, desc.to_json())
            if push:
                progress(f"pushing {b.to}")
                result.digest = push_image(b.to)
                record_build(b.to, result.digest, ctx, measured.entries)
            else:
                forget_build(b.to)
        result.description = desc
        write_description(tmp, desc)
    result.context = ctx_dir
    if result.digest and b.signature is not None and b.signature.sign:
        from veil.image.signing import sign_image

        progress(f"signing {b.to}@{result.digest}")
        key = manifest.parent / b.signature.key if b.signature.key else None
        result.signature = sign_image(b.to, result.digest, key)
    LocalIndex().put(IndexEntry(
        image=b.to, description=desc, digest=result.digest, source=str(manifest),
    ))
    return result
