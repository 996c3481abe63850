"""What goes into a docker context besides the checkout: path checks, the customer repository,
and the wheels pip installs from.

- `inside()` resolves `docker_context` / `dockerfile_path` in the checkout and refuses anything
  that leads out of it (through `..` or a symbolic link); `check_links()` refuses a context
  holding links to elsewhere on the host.
- The customer repository (build args `CUSTOMER_REPOSITORY` + `CUSTOMER_COMMIT_SHA`, optional
  `CUSTOMER_GIT_BRANCH`, default `main`) is fetched into `veil-customer/` of the docker context,
  and `CUSTOMER_REPO_DIR=veil-customer` is passed to the Dockerfile.
- A Dockerfile that declares `ARG PIP_FIND_LINKS` (and the request does not set it) gets
  `veil-wheels/`: binary wheels for the context's `requirements*.txt` files (top level and one
  folder down), downloaded on the platform host for the base image's Python and cached, because a
  build step cannot reach a package index. Requirement files may only name requirements: option
  lines (`-r`, `-e`, `--index-url`, ...) and URLs are refused, so a file cannot make the host's pip
  read local files or another index.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

from veil.fsutil import links_leaving
from veil.platform.git import fetch
from veil.platform.job import BuildFailed, Job

__all__ = ["CUSTOMER_DIR", "WHEELS_DIR", "check_links", "declares_arg", "inside",
           "stage_customer", "stage_wheels"]

CUSTOMER_DIR = "veil-customer"
WHEELS_DIR = "veil-wheels"
_PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
              "manylinux2014_x86_64", "linux_x86_64")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(\[[A-Za-z0-9_,.\- ]*\])?"
                          r"\s*([<>=!~]=?\s*[A-Za-z0-9.*+!_\-]+\s*(,\s*[<>=!~]=?\s*"
                          r"[A-Za-z0-9.*+!_\-]+\s*)*)?(;[^@]*)?$")


def inside(root: Path, rel: str, field: str, *, folder: bool) -> Path:
    """`root/rel`, which must exist in the checkout and not lead out of it."""
    base = root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(base):
        raise BuildFailed(f"{field} {rel!r} leads outside the checkout (a symbolic link); "
                          "only files of the repository are built")
    if folder and not path.is_dir():
        raise BuildFailed(f"{field} {rel!r} is not a folder of the repository at this commit")
    if not folder and not path.is_file():
        raise BuildFailed(f"{field} {rel!r}: no such file in the repository at this commit")
    return path


def check_links(root: Path, context: Path, field: str = "docker_context") -> None:
    leaving = links_leaving(root, context)
    if leaving:
        shown = ", ".join(str(link.relative_to(root)) for link, _ in leaving[:5])
        raise BuildFailed(f"{field}: symbolic links lead outside the checkout: {shown}"
                          + (f" (and {len(leaving) - 5} more)" if len(leaving) > 5 else ""))


def declares_arg(dockerfile: str, name: str) -> bool:
    return re.search(rf"^\s*ARG\s+{re.escape(name)}(\s|=|$)", dockerfile, re.M | re.I) is not None


def stage_customer(job: Job, args: dict[str, str], context: Path) -> dict[str, str]:
    """Fetch the customer repository into the context; the build args that point at it."""
    url = args.get("CUSTOMER_REPOSITORY")
    if url is None:
        return {}
    commit = args["CUSTOMER_COMMIT_SHA"]
    branch = args.get("CUSTOMER_GIT_BRANCH", "main")
    dest = context / CUSTOMER_DIR
    if dest.exists() or dest.is_symlink():
        raise BuildFailed(f"the docker context already holds {CUSTOMER_DIR}/, where the customer "
                          "repository goes")
    fetch(job, url, branch, commit, 1, dest, what="customer repository")
    shutil.rmtree(dest / ".git")
    check_links(dest, dest, field="the customer repository")
    return {"CUSTOMER_REPO_DIR": CUSTOMER_DIR}


def _requirement_lines(context: Path) -> list[str]:
    files = sorted([*context.glob("requirements*.txt"), *context.glob("*/requirements*.txt")])
    lines: list[str] = []
    for f in files:
        if f.is_symlink() or not f.is_file():
            continue
        rel = f.relative_to(context)
        for n, raw in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if not _REQUIREMENT.match(line):
                raise BuildFailed(
                    f"{rel}:{n}: only requirement specifiers (name, extras, versions, markers) "
                    "are allowed in a platform build; options such as -r, -e, --index-url and "
                    "URLs are not (wheels come from the platform's package index)")
            lines.append(line)
    return lines


def stage_wheels(job: Job, context: Path, dockerfile: str, args: dict[str, str],
                 python_version: str, cache: Path) -> dict[str, str]:
    """Wheels for the context's requirements in `veil-wheels/`; the build arg naming them."""
    if "PIP_FIND_LINKS" in args or not declares_arg(dockerfile, "PIP_FIND_LINKS"):
        return {}
    lines = sorted(set(_requirement_lines(context)))
    if not lines:
        return {}
    key = hashlib.sha256("\n".join([python_version, *lines]).encode()).hexdigest()[:24]
    cached = cache / key
    if not cached.is_dir():
        job.step(f"downloading wheels for Python {python_version}: {', '.join(lines)}")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{key}.{os.getpid()}.{job.build_id[:8]}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / "requirements.txt").write_text("\n".join(lines) + "\n")
        plat = [a for p in _PLATFORMS for a in ("--platform", p)]
        try:
            job.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                     "--only-binary=:all:", "--python-version", python_version,
                     "--implementation", "cp", *plat, "-r", str(tmp / "requirements.txt"),
                     "-d", str(tmp / "wheels")],
                    what="downloading the wheels of the requirements failed",
                    hint="only binary wheels are used (the image has no compiler); check the "
                    "names and versions")
            os.replace(tmp / "wheels", cached) if not cached.exists() else None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    dest = context / WHEELS_DIR
    if dest.exists() or dest.is_symlink():
        raise BuildFailed(f"the docker context already holds {WHEELS_DIR}/")
    try:
        shutil.copytree(cached, dest, copy_function=os.link)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(cached, dest)
    return {"PIP_FIND_LINKS": WHEELS_DIR}
