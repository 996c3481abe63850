"""Rebuild + push without a build when only application files changed.

After a full build and push, Veil records the pushed manifest and config and a key over
everything except the application layer (the Containerfile, which pins the base by digest,
and every staged file outside `pwd`). When the next build of the same image has the same key,
only the application layer differs: Veil writes that layer itself (a deterministic tar, as
buildah's COPY with `--timestamp 0` lays it out), swaps it and the description label into the
recorded manifest and config, and pushes one layer blob, the config and the manifest through the
registry API. That takes milliseconds instead of a buildah run. Any mismatch, or a registry that
no longer holds the other layers, falls back to the full build.

The measurement of such an image is computed, not read from a mounted image: the record keeps
the measured entries of the full build outside `pwd` (those layers are reused unchanged), and
the entries under `pwd` come from the staged files as the written layer holds them (owner root).
The e2e tests check the result against what the launcher measures in the pushed image.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.image.context import BuildContext
from veil.image.reference import parse_reference
from veil.image.registry import Registry
from veil.image.tools import container_env
from veil.manifest.description import LABEL_KEY, ServiceDescription
from veil.paths import home_dir
from veil.runtime.measure import Entry, MeasurementPlan, digest_of, is_excluded, scan

__all__ = [
    "Record", "app_layer", "context_key", "fast_measurement", "forget_build", "record_build",
    "try_fast_push",
]

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Record:
    key: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    app_layer: int
    app_history: int
    label_history: int | None
    digest: str = ""
    local_removed: bool = False  # the stale local tag was already removed
    entries: list[list[Any]] = field(default_factory=list)  # measured entries outside pwd


def _record_path(image: str) -> Path:
    return home_dir() / "cache" / "builds" / (hashlib.sha256(image.encode()).hexdigest()[:32]
                                               + ".json")


def context_key(ctx: BuildContext) -> str:
    """A hash of everything the image holds except the application layer."""
    rootfs = ctx.dir / "rootfs"
    plan = MeasurementPlan(roots=["/"], command="", pwd="/", local_env={}, exclude=[ctx.plan.pwd])
    h = hashlib.sha256(ctx.containerfile.encode())
    h.update((rootfs / "etc/veil/measured.json").read_bytes())
    h.update(digest_of(scan(str(rootfs), plan), plan).encode())
    return h.hexdigest()


def _under(path: str, pwd: str) -> bool:
    return is_excluded(path, [pwd])


def fast_measurement(image: str, ctx: BuildContext) -> str | None:
    """The measurement of the image `try_fast_push` would push, or None (build fully)."""
    rec = _load(image)
    if rec is None or not rec.entries or rec.key != context_key(ctx):
        return None
    pwd = ctx.plan.pwd
    app = MeasurementPlan(roots=[pwd], command="", pwd=pwd, local_env={},
                          exclude=ctx.plan.exclude)
    staged = [e._replace(uid=0, gid=0) for e in scan(str(ctx.dir / "rootfs"), app)]
    kept = [Entry(*e) for e in rec.entries]
    return digest_of(kept + staged, ctx.plan)


def app_layer(rootfs: Path, pwd: str) -> bytes:
    """The tar of the application layer: parents of `pwd`, then everything under it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        parts = pwd.strip("/").split("/")
        for i in range(1, len(parts)):
            tar.addfile(_info("/".join(parts[:i]), tarfile.DIRTYPE, 0o755))
        top = rootfs / pwd.lstrip("/")
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = os.path.relpath(dirpath, rootfs)
            st = os.lstat(dirpath)
            tar.addfile(_info(rel, tarfile.DIRTYPE, stat.S_IMODE(st.st_mode)))
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(filenames + links):
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                arc = os.path.join(rel, name)
                if stat.S_ISLNK(st.st_mode):
                    info = _info(arc, tarfile.SYMTYPE, stat.S_IMODE(st.st_mode))
                    info.linkname = os.readlink(path)
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    info = _info(arc, tarfile.REGTYPE, stat.S_IMODE(st.st_mode))
                    info.size = st.st_size
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _find(history: list[dict[str, Any]], needle: str) -> tuple[int, int] | None:
    """(history index, layer index) of the last history entry whose command contains needle."""
    layer = -1
    found = None
    for i, h in enumerate(history):
        if not h.get("empty_layer"):
            layer += 1
        if needle in h.get("created_by", ""):
            found = (i, layer)
    return found


def record_build(image: str, digest: str, ctx: BuildContext, entries: list[Entry]) -> None:
    """Remember a fully built and pushed image, so the next app-only change can skip the build.
    `entries` is its measurement's list (`veil.image.measurement`)."""
    ref = parse_reference(image)
    try:
        with Registry(ref) as reg:
            _, manifest = reg.manifest(digest)
            config = json.loads(reg.blob(manifest["config"]["digest"]))
    except OperationalError:
        return
    history = config.get("history") or []
    app = _find(history, f" in {ctx.plan.pwd}/")
    label = _find(history, f'LABEL "{LABEL_KEY}"')
    if "manifests" in manifest or app is None:
        return
    if len(manifest.get("layers", [])) != len(config.get("rootfs", {}).get("diff_ids", [])):
        return
    outside = [list(e) for e in entries if not _under(e.path, ctx.plan.pwd)]
    rec = Record(context_key(ctx), manifest, config, app[1], app[0],
                 label[0] if label else None, digest, entries=outside)
    atomic_write_text(_record_path(image), json.dumps(asdict(rec), sort_keys=True))


def forget_build(image: str) -> None:
    """A local build replaced the tag: the next push must come from a full build again."""
    _record_path(image).unlink(missing_ok=True)


def _load(image: str) -> Record | None:
    p = _record_path(image)
    if not p.exists():
        return None
    try:
        return Record(**json.loads(p.read_text()))
    except (ValueError, TypeError):
        return None


def try_fast_push(image: str, ctx: BuildContext, desc: ServiceDescription) -> str | None:
    """Push the image with a new application layer; the new digest, or None to build fully."""
    rec = _load(image)
    if rec is None or rec.key != context_key(ctx):
        return None
    label = desc.to_json()
    ref = parse_reference(image)
    if rec.digest and rec.config.get("config", {}).get("Labels", {}).get(LABEL_KEY) == label:
        # nothing changed at all (the label holds the measurement): the pushed image stands
        try:
            with Registry(ref) as reg:
                reg.manifest(rec.digest)
            return rec.digest
        except OperationalError:
            return None
    layer = app_layer(ctx.dir / "rootfs", ctx.plan.pwd)
    blob = gzip.compress(layer, compresslevel=6, mtime=0)
    config = copy.deepcopy(rec.config)
    config["rootfs"]["diff_ids"][rec.app_layer] = "sha256:" + hashlib.sha256(layer).hexdigest()
    config.setdefault("config", {}).setdefault("Labels", {})[LABEL_KEY] = label
    if rec.label_history is not None:
        config["history"][rec.label_history]["created_by"] = (
            f"/bin/sh -c #(nop) LABEL {json.dumps(LABEL_KEY)}={json.dumps(label)}"
        )
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = copy.deepcopy(rec.manifest)
    try:
        with Registry(ref) as reg:
            manifest["layers"][rec.app_layer] = {
                "mediaType": GZIP_LAYER, "digest": reg.put_blob(blob), "size": len(blob),
            }
            manifest["config"] = {
                "mediaType": manifest["config"]["mediaType"], "digest": reg.put_blob(config_bytes),
                "size": len(config_bytes),
            }
            digest = reg.put_manifest(ref.tag or "latest", manifest, manifest["mediaType"])
    except OperationalError:
        return None  # e.g. the registry lost the other layers: build fully
    if not rec.local_removed:
        # the local copy of the tag is now stale; a later `podman run` must pull the pushed one
        subprocess.run(["buildah", "rmi", image], capture_output=True, env=container_env(),
                       check=False)
    rec.manifest, rec.config, rec.digest, rec.local_removed = manifest, config, digest, True
    atomic_write_text(_record_path(image), json.dumps(asdict(rec), sort_keys=True))
    return digest
