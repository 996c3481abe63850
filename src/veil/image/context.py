"""The build context under `target/<name>/`: Containerfile, staged files, measurement plan.

Everything the build adds is staged under `rootfs/` exactly where it will sit in the image.
Layer order serves the cache: base → requirements → launcher → plan → application; the base is
the runtime base when the build base has one (`veil.image.runtime`). With `run:` steps, they run
in sconectl's order in a build stage on the build base (base → requirements → application →
`run:` steps: they see the copied files; an edit of the program re-runs them, see
bench/bench_run_order.py), and the final image is runtime base → requirements → launcher → plan
→ the program folder copied from the build stage. On a base without a runtime base the steps run
in the one stage: base → requirements → application → `run:` steps → launcher → plan. The plan
(`/etc/veil/measured.json`) measures the whole root filesystem of the built image except the
runtime paths and the service's injection-file targets; the builder measures the built image
(`veil.image.measurement`), the launcher the running container's `/`, so whatever the steps
leave in the image is measured too.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from veil.errors import ManifestError, OperationalError, Problem, UserError
from veil.fsutil import links_leaving
from veil.image.inputs import WorkDir, locate_input
from veil.manifest.load import Positions, format_path
from veil.manifest.models import GenService
from veil.runtime.measure import PLAN_PATH, RUNTIME_PATHS, MeasurementPlan

__all__ = [
    "LAUNCHER_DIR", "RUNTIME_MODULES", "BuildContext", "check_target", "locate_input",
    "stage_context",
]

LAUNCHER_DIR = "/opt/veil"
RUNTIME_MODULES = (
    "__init__.py", "der.py", "files.py", "guard.py", "launcher.py", "measure.py", "tsm.py",
)
# -S: no `site` in the launcher (no .pth file, no sitecustomize runs before it measured)
ENTRYPOINT = ["/usr/bin/python3", "-I", "-S", "-B", f"{LAUNCHER_DIR}/launch.py"]
_SHIM = f'''\
"""Entrypoint of a Veil image: attest to CAS, then exec the provisioned program."""
import sys

sys.path.insert(0, "{LAUNCHER_DIR}")
from veil.runtime.launcher import main  # noqa: E402

sys.exit(main())
'''
_ALLOWED_HERE = "a file or directory relative to the current directory, as sconectl reads it"
# the launcher's own folders, and paths the measurement leaves out (a program there would run
# unmeasured)
_RESERVED = ("/opt/veil", "/etc/veil", *(p for p in RUNTIME_PATHS if not p.startswith("/etc/")))


@dataclass
class BuildContext:
    dir: Path
    plan: MeasurementPlan
    containerfile: str
    copied: list[str] = field(default_factory=list)  # image paths of application files
    notes: list[str] = field(default_factory=list)  # warnings for the user


def _problem(
    msg: str, path: tuple[str | int, ...], value: object, positions: Positions | None,
    allowed: str,
) -> Problem:
    if positions is not None:
        return positions.problem(msg, path, value=value, allowed=allowed)
    return Problem(msg, file="<manifest>", path=format_path(path), value=value, allowed=allowed)


def _check(svc: GenService, src_dir: Path, positions: Positions | None,
           workdir: WorkDir | None = None, notes: list[str] | None = None,
           ) -> list[tuple[Path, str]]:
    """Every `copy` entry as (host path, path under pwd); all problems reported together."""
    problems: list[Problem] = []
    pwd = svc.build.pwd
    norm = posixpath.normpath(pwd) if pwd.startswith("/") else ""
    if not norm or norm == "/" or any(norm == r or norm.startswith(r + "/") for r in _RESERVED):
        problems.append(_problem(
            "pwd must be an absolute directory of its own", ("build", "pwd"), pwd, positions,
            allowed="an absolute path such as /app, not / and not under " + ", ".join(_RESERVED),
        ))
    out: list[tuple[Path, str]] = []
    for i, entry in enumerate(svc.build.copy_):
        rel = posixpath.normpath(entry)
        if entry.startswith("/") or rel.startswith(".."):
            problems.append(_problem(
                "a copy entry must stay inside the manifest's directory", ("build", "copy", i),
                entry, positions, allowed="a relative path such as app.py or src/",
            ))
            continue
        found = locate_input(rel, workdir, src_dir)
        host = found.path
        if found.note and notes is not None:
            notes.append(found.note)
        if found.problem:
            problems.append(_problem(
                found.problem, ("build", "copy", i), entry, positions,
                allowed=_ALLOWED_HERE if workdir is not None and not workdir.beside_manifest
                else "a file or directory relative to the current directory (as sconectl "
                "reads it) or to the manifest's folder",
            ))
            continue
        base = workdir.path if workdir is not None and host == workdir.path / rel else src_dir
        leaving = links_leaving(base, host)
        if leaving:
            link, target = leaving[0]
            more = f" (and {len(leaving) - 1} more)" if len(leaving) > 1 else ""
            problems.append(_problem(
                f"{link} leads outside the manifest's directory through a symbolic link, to "
                f"{target}{more}; the build context takes no files from elsewhere on the host",
                ("build", "copy", i), entry, positions,
                allowed="files and links inside the manifest's directory (copy the file in "
                "instead of linking to it)",
            ))
            continue
        out.append((host, "." if rel == "." else rel))
    req = svc.build.requirements
    if req:
        found = locate_input(req, workdir, src_dir, what="file")
        if found.note and notes is not None:
            notes.append(found.note)
        problem = found.problem or (None if found.path.is_file() else
                                    f"{found.path} is not a file")
        if problem:
            problems.append(_problem(problem, ("build", "requirements"), req, positions,
                                     allowed="a pip requirements file"))
    problems += _check_injection_files(svc, positions)
    if problems:
        n = len(problems)
        raise ManifestError(problems,
                            summary=f"{n} error{'s' if n != 1 else ''} in the service manifest")
    return out


def _check_injection_files(svc: GenService, positions: Positions | None) -> list[Problem]:
    """Injection-file targets are left out of the measurement, so they must be plain files of
    their own: never the launcher or the plan, never `/`."""
    problems = []
    for i, f in enumerate(svc.injection_files):
        norm = posixpath.normpath(f.path) if f.path.startswith("/") else ""
        launcher = ("/opt/veil", "/etc/veil")
        if not norm or norm == "/" or any(norm == r or norm.startswith(r + "/")
                                          for r in launcher):
            problems.append(_problem(
                "an injection file must be an absolute path outside Veil's own folders",
                ("injection_files", i, "path"), f.path, positions,
                allowed="an absolute file path such as /app/conf/app.ini, not under "
                + ", ".join(launcher),
            ))
    return problems


_HEADER = "# Generated by veil from the service manifest"


def check_target(ctx_dir: Path) -> None:
    """`ctx_dir` is replaced as a whole: only a new folder or an earlier build context."""
    if ctx_dir.is_symlink() or (ctx_dir.exists() and not ctx_dir.is_dir()):
        raise UserError(f"the build context {ctx_dir} exists and is not a folder",
                        hint="choose another target with -t")
    for parent in ctx_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"the target {parent} is a file, not a folder",
                            hint="choose another target with -t")
    if not ctx_dir.is_dir() or not any(ctx_dir.iterdir()):
        return
    containerfile = ctx_dir / "Containerfile"
    if not (containerfile.is_file() and containerfile.read_text(
            encoding="utf-8", errors="replace").startswith(_HEADER)):
        raise UserError(
            f"{ctx_dir} already holds files that veil did not write; the build context would "
            "replace them", hint="choose another target with -t, or remove that folder")


def _copy_tree(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)


def _stage_launcher(rootfs: Path, python_version: str | None = None) -> None:
    pkg = rootfs / LAUNCHER_DIR.lstrip("/") / "veil"
    (pkg / "runtime").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    src = resources.files("veil.runtime")
    for name in RUNTIME_MODULES:
        (pkg / "runtime" / name).write_bytes(src.joinpath(name).read_bytes())
    (pkg.parent / "launch.py").write_text(_SHIM)
    if python_version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        _compile(pkg, rootfs)
    for p in [pkg.parent, *pkg.parent.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def _compile(pkg: Path, rootfs: Path) -> None:
    """The bytecode of the launcher's modules, when this Python is the image's version (the same
    bytecode format): the launcher runs with -B, so without it every start compiles its ~2,000
    lines again (~10 ms of CPU). Checked-hash bytecode: the interpreter uses it only while it
    matches its source (no timestamps involved; both files are measured). Compiled in a fresh
    interpreter: marshal's output depends on the reference counts in the compiling process, so
    only a process in a known state gives the same bytes at every build."""
    files = sorted(pkg.rglob("*.py"))
    args = [a for py in files for a in (str(py), "/" + py.relative_to(rootfs).as_posix())]
    proc = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", _COMPILE, *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OperationalError(f"compiling the launcher failed:\n{proc.stderr[-2000:]}")


_COMPILE = """\
import importlib.util, py_compile, sys
args = sys.argv[1:]
for src, shown in zip(args[::2], args[1::2]):
    py_compile.compile(src, cfile=importlib.util.cache_from_source(src), dfile=shown,
                       doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
"""


def stage_context(
    svc: GenService,
    src_dir: Path,
    ctx_dir: Path,
    *,
    base: str,
    site_packages: str | None,
    requirements_dir: Path | None,
    positions: Positions | None = None,
    workdir: WorkDir | None = None,
    runtime_base: str | None = None,
    python_version: str | None = None,
) -> BuildContext:
    """Write the build context into the (fresh, empty) directory `ctx_dir`. `base`: the image
    `run:` steps run in; `runtime_base`: the one the service runs on, when it is another;
    `python_version`: the image's (3.11), for the launcher's bytecode."""
    notes: list[str] = []
    copies = _check(svc, src_dir, positions, workdir, notes)
    b = svc.build
    pwd = posixpath.normpath(b.pwd)
    rootfs = ctx_dir / "rootfs"
    app_root = rootfs / pwd.lstrip("/")
    app_root.mkdir(parents=True)
    copied: list[str] = []
    for host, rel in copies:
        _copy_tree(host, app_root / rel)
        copied.append(posixpath.join(pwd, rel))
    _stage_launcher(rootfs, python_version)
    lines = [f"{_HEADER}; edit the manifest, not this file."]
    runs = [" ".join(part.strip() for part in cmd.strip().splitlines() if part.strip())
            for cmd in b.run]
    requirements: list[str] = []
    if requirements_dir is not None and site_packages is not None:
        req_root = rootfs / site_packages.lstrip("/")
        shutil.copytree(requirements_dir, req_root, symlinks=True)
        requirements.append(f"COPY rootfs{site_packages}/ {site_packages}/")
    elif b.requirements:
        requirements.append(
            f"# {b.requirements}: resolved at build time, for the base image's Python")
    staged_app = f"COPY rootfs{pwd}/ {pwd}/"
    if runs and runtime_base is not None:
        # the steps run in the build base (a shell, pip) on the requirements and the copied
        # files; only the program's folder, as they left it, goes on into the runtime image
        lines += [f"FROM {base} AS build", *requirements, staged_app]
        lines += [f"RUN {one}" for one in runs]
        staged_app = f"COPY --from=build {pwd}/ {pwd}/"
        runs = []
    lines.append(f"FROM {runtime_base or base}")
    lines += requirements
    if runs:
        # sconectl's order: `run:` steps see the copied files (`mv /app/a /app/b` works); the
        # launcher and the plan come after them, out of their reach
        lines.append(staged_app)
        lines += [f"RUN {one}" for one in runs]
    lines.append(f"COPY rootfs{LAUNCHER_DIR}/ {LAUNCHER_DIR}/")
    local_env = {e.name: e.value for e in svc.environment.local}
    if b.command is None:  # `veil.image.wrapped` fills it in for wrapped services
        raise UserError(f"service {b.name} has no build.command")
    targets = {posixpath.normpath(f.path) for f in svc.injection_files}
    plan = MeasurementPlan(
        roots=["/"], command=b.command, pwd=pwd, local_env=local_env,
        # host_paths come from the host at run time: named in the plan, never measured, the
        # only places besides the runtime paths where the launcher accepts a mount
        exclude=sorted(set(RUNTIME_PATHS) | targets | set(b.host_paths)),
        host_paths=sorted(b.host_paths),
    )
    plan_file = rootfs / PLAN_PATH.lstrip("/")
    plan_file.parent.mkdir(parents=True)
    plan_file.write_text(plan.to_json())
    plan_file.chmod(0o644)
    lines.append(f"COPY rootfs{posixpath.dirname(PLAN_PATH)}/ {posixpath.dirname(PLAN_PATH)}/")
    if not runs:  # the application last: an edit of the program rebuilds one layer
        lines.append(staged_app)
    lines.append(f"WORKDIR {pwd}")
    lines.append(f"ENTRYPOINT {json.dumps(ENTRYPOINT)}")
    lines.append("CMD []")
    containerfile = "\n".join(lines) + "\n"
    (ctx_dir / "Containerfile").write_text(containerfile)
    (ctx_dir / ".containerignore").write_text("description.json\n")
    return BuildContext(dir=ctx_dir, plan=plan, containerfile=containerfile, copied=copied,
                        notes=notes)

