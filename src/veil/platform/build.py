"""A `containerbuild` from request to pushed digests, as one readable function.

    fetch the repository at the commit (shallow, deeper when needed)
    check the paths (dockerfile_path, docker_context: inside the checkout, no links leaving it)
    stage what the context needs (the customer repository, wheels)
    buildah build (overlay, chroot isolation, layer cache), every tag of every registry at once,
        labels: AWS role and account alias, the source, every build arg that is not secret;
        secret build args as build secrets (`RUN --mount=type=secret,id=NAME`)
    push every reference to its registry; the manifest digest per registry
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from veil.image.tools import container_env, is_loopback
from veil.platform.git import fetch
from veil.platform.job import BuildFailed, Job
from veil.platform.request import ContainerBuildRequest
from veil.platform.sources import check_links, inside, stage_customer, stage_wheels

__all__ = ["LABEL_PREFIX", "BuildSettings", "Outcome", "base_images", "label_step", "labels_for",
           "remove_local", "run_build"]

LABEL_PREFIX = "io.veil.platform."
_MAX_DOCKERFILE = 1 << 20


@dataclass(frozen=True)
class BuildSettings:
    python_version: str = "3.11"  # the base images' Python, for wheels
    wheel_cache: Path = Path("wheels")


@dataclass
class Outcome:
    digests: dict[str, str] = field(default_factory=dict)  # registry → manifest digest
    images: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # registry → why the push failed


def remove_local(refs: list[str]) -> None:
    """Take the names off the local copies. Only the names: `rmi` would also delete the image's
    layers, which a concurrent build's cache lookup or a pull of the same image (of this or
    another process sharing the storage) may be using ("layer not known")."""
    for ref in refs:
        subprocess.run(["podman", "untag", ref], env=container_env(), capture_output=True,
                       check=False)


_ESCAPE_DIRECTIVE = re.compile(r"\A(?:\s*#[^\n]*\n)*?\s*#\s*escape\s*=", re.I)


def label_step(dockerfile: str, labels: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """One `LABEL` instruction for the labels (buildah makes each `--label` a step of its own,
    each a commit: ~0.3 s apiece), and the labels it cannot hold (given as `--label`)."""
    lines = dockerfile.rstrip().splitlines()
    if _ESCAPE_DIRECTIVE.match(dockerfile) or (lines and lines[-1].endswith("\\")):
        return None, labels
    plain = {k: v for k, v in labels.items() if v.isprintable()}
    rest = {k: v for k, v in labels.items() if k not in plain}
    if not plain:
        return None, labels

    def quote(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'

    return "LABEL " + " ".join(f"{quote(k)}={quote(v)}" for k, v in plain.items()), rest


def labels_for(req: ContainerBuildRequest, args: dict[str, str]) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.source": req.repository,
        "org.opencontainers.image.revision": req.git_commit_sha,
        LABEL_PREFIX + "namespace": req.namespace,
        LABEL_PREFIX + "dockerfile": req.dockerfile_path,
    }
    if req.injected_aws_role_arn:
        labels[LABEL_PREFIX + "aws-role-arn"] = req.injected_aws_role_arn
    if req.injected_aws_account_short_alias:
        labels[LABEL_PREFIX + "aws-account-alias"] = req.injected_aws_account_short_alias
    for name, value in sorted(args.items()):
        labels[LABEL_PREFIX + "build-arg." + name] = value
    return labels


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.M | re.I)
_ARG_DEFAULT = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)", re.M | re.I)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def base_images(dockerfile: str, args: dict[str, str]) -> list[str]:
    """The images the Dockerfile's FROM lines name, with build args and ARG defaults applied."""
    values = {m.group(1): m.group(2).strip("\"'") for m in _ARG_DEFAULT.finditer(dockerfile)}
    values.update(args)
    stages = set(re.findall(r"^\s*FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.M | re.I))
    out = []
    for m in _FROM.finditer(dockerfile):
        name = _VAR.sub(lambda v: values.get(v.group(1) or v.group(2), ""), m.group(1))
        if name not in stages and name.lower() != "scratch":
            out.append(name)
    return out


def _write_secrets(secrets: dict[str, str], where: Path) -> list[str]:
    where.mkdir(mode=0o700)
    flags = []
    for name, value in sorted(secrets.items()):
        path = where / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        flags += ["--secret", f"id={name},src={path}"]
    return flags


def _push(job: Job, ref: str, digestfile: Path, registry: str) -> str:
    tls = ["--tls-verify=false"] if is_loopback(ref) else []
    job.run(["buildah", "push", "--retry", "1", *tls, "--digestfile", str(digestfile), ref,
             f"docker://{ref}"],
            what=f"pushing {ref} to the registry {registry} failed", env=container_env())
    return digestfile.read_text().strip()


# buildah's layer cache check walks every image of the shared storage; an image removed by another
# process in that moment fails the build with this text. The build itself is sound: run it again.
_STORAGE_RACE = "layer not known"
_BUILD_ATTEMPTS = 3


def build(job: Job, cmd: list[str], *, what: str, cwd: Path) -> None:
    """Run a buildah build; again (up to three times in all) when only the storage race hit it."""
    for attempt in range(1, _BUILD_ATTEMPTS + 1):
        try:
            job.run(cmd, what=what, env=container_env(), cwd=cwd)
            return
        except BuildFailed as err:
            if _STORAGE_RACE not in err.reason or attempt == _BUILD_ATTEMPTS:
                raise
            job.step("the image storage changed under the build (another process removed an "
                     "image its cache check was reading): building again")


def run_build(job: Job, req: ContainerBuildRequest, secrets: dict[str, str], work: Path,
              settings: BuildSettings) -> Outcome:
    checkout = work / "checkout"
    fetch(job, req.repository, req.git_branch, req.git_commit_sha, req.git_fetch_depth, checkout)
    shutil.rmtree(checkout / ".git")  # the context is the files at the commit, not the history
    context = inside(checkout, req.docker_context, "docker_context", folder=True)
    dockerfile = inside(checkout, req.dockerfile_path, "dockerfile_path", folder=False)
    check_links(checkout, context)
    if dockerfile.stat().st_size > _MAX_DOCKERFILE:
        raise BuildFailed(f"dockerfile_path {req.dockerfile_path!r} is larger than 1 MiB")
    text = dockerfile.read_text(encoding="utf-8", errors="replace")

    args = req.plain_args()
    args |= stage_customer(job, args, context)
    args |= stage_wheels(job, context, text, args, settings.python_version, settings.wheel_cache)

    refs = [r for rs in req.image_refs().values() for r in rs] or \
        [f"localhost/veil-platform/{req.image_name}:{t}" for t in req.tags]
    bases = base_images(text, args)
    tls = ["--tls-verify=false"] if bases and all(is_loopback(b) for b in bases) else []
    job.step(f"building {req.dockerfile_path} in {req.docker_context} with buildah")
    line, flags = label_step(text, labels_for(req, args))
    if line is not None:  # the Dockerfile as given, plus one LABEL step; outside the context
        dockerfile = work / "Dockerfile.veil"
        dockerfile.write_text(text.rstrip("\n") + "\n" + line + "\n", encoding="utf-8")
    cmd = ["buildah", "build", "--isolation", "chroot", "--layers", *tls, "-f", str(dockerfile)]
    for name, value in sorted(args.items()):
        cmd += ["--build-arg", f"{name}={value}"]
    for name, value in flags.items():
        cmd += ["--label", f"{name}={value}"]
    for ref in refs:
        cmd += ["-t", ref]
    try:
        cmd += _write_secrets(secrets, work / "secrets")
        build(job, [*cmd, str(context)], what=f"building {req.dockerfile_path} failed",
              cwd=context)
    finally:
        shutil.rmtree(work / "secrets", ignore_errors=True)

    outcome = Outcome(images=[])
    job.local_tags = refs  # untagged by the pool later, whatever happens from here on
    for registry, reg_refs in req.image_refs().items():
        job.step(f"pushing to {registry}")
        try:
            for i, ref in enumerate(reg_refs):
                digest = _push(job, ref, work / f"digest-{len(outcome.images)}", registry)
                outcome.digests.setdefault(registry, digest)
                outcome.images.append(f"{ref}@{digest}")
                if i and digest != outcome.digests[registry]:
                    raise BuildFailed(f"the registry {registry} stored {ref} as {digest}, "
                                      f"not {outcome.digests[registry]}")
        except BuildFailed as err:
            outcome.failures[registry] = err.reason
            outcome.digests.pop(registry, None)
    if outcome.failures:
        names = ", ".join(outcome.failures)
        failed = BuildFailed(f"pushing to the registr{'ies' if len(outcome.failures) > 1 else 'y'} "
                          f"{names} failed:\n" + "\n".join(outcome.failures.values()))
        failed.outcome = outcome  # the registries that did take it keep their digests
        raise failed
    return outcome
