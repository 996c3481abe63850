"""`veil apply -f FILE`: a service manifest builds an image, a mesh deploys an application.

The file's `kind` decides which. `--print-defaults` (mesh only) writes the mesh with every
variable its services declare, for the seeds' patch workflow.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer
from rich.table import Table

from veil.cli._app import state
from veil.cli._apply_service import apply_service
from veil.cli._mesh import descriptions_for, print_warnings
from veil.cli._options import ApplyOptions, Mode, Output
from veil.cli._output import write_output
from veil.errors import OperationalError, UserError
from veil.manifest.load import Loaded, load_document, read_manifest
from veil.manifest.models import GenService, Mesh
from veil.manifest.tolerance import parse_tolerance
from veil.resolve.defaults import print_defaults
from veil.resolve.env import ResolvedMesh, resolve_mesh
from veil.resolve.explain import env_rows

__all__ = ["register"]


def apply(
    file: Path = typer.Option(..., "-f", "--file-name", "--filename",
                              help="Manifest to apply: kind genservice or mesh."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show what would be done."),
    mode: Mode = typer.Option("production", "--mode", help="debug or production."),
    target: Path = typer.Option(Path("target"), "-t", "--target",
                                help="Directory for build contexts and charts."),
    no_push: bool = typer.Option(False, "--no-push", help="Build the image but do not push it."),
    defaults: bool = typer.Option(False, "--print-defaults",
                                  help="Mesh only: write the mesh with every declared variable."),
    out: Path | None = typer.Option(None, "--file",
                                    help="Where --print-defaults writes (default: stdout)."),
    release: str | None = typer.Option(None, "--release", help="Helm release name."),
    output: Output = typer.Option("helm_chart", "--output", help="helm_chart or yaml."),
) -> None:
    """Apply a service manifest or a mesh (dispatching on `kind`)."""
    if release is not None and not (len(release) <= 53 and _RELEASE_RE.fullmatch(release)):
        raise UserError(f"--release {release!r} is not a Helm release name",
                        hint="lower-case letters, digits, - and . ; at most 53 characters")
    options = ApplyOptions(dry_run=dry_run, mode=mode, target=target, push=not no_push,
                           verbose=state.verbose, release=release, output=output)
    text = read_manifest(file)
    name = "<stdin>" if str(file) == "-" else str(file)
    doc = load_document(name, text)
    print_warnings(doc.warnings)
    if doc.kind == "genservice":
        if defaults:
            raise UserError("--print-defaults applies to a mesh; "
                            f"{name} is a service manifest (kind: genservice)")
        assert isinstance(doc.model, GenService)
        apply_service(file, doc.model, options, positions=doc.positions)
        return
    if defaults:
        descriptions, _ = descriptions_for(doc)
        result = print_defaults(text, name, descriptions)
        if out is None:
            sys.stdout.write(result)
        else:
            write_output(out, result, option="--file")
            state.info(f"wrote {out}")
        return
    if out is not None:
        raise UserError("--file names the output of --print-defaults; add --print-defaults")
    _apply_mesh(doc, options)


# Helm's rule for release names (a DNS subdomain of at most 53 characters)
_RELEASE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def release_name(namespace: str) -> str:
    """The default release: the namespace in the form Helm accepts (`my_App` → `my-app`)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", namespace.lower())
    name = re.sub(r"-*\.-*", ".", name).strip(".-")[:53].strip(".-")
    return name or "veil"


def _apply_mesh(doc: Loaded, options: ApplyOptions) -> None:
    descriptions, origins = descriptions_for(doc)
    resolved = resolve_mesh(doc, descriptions, service_origins=origins)
    if not options.dry_run:
        raise OperationalError(
            "uploading sessions to CAS and writing the Helm chart are not part of this "
            "version of `veil apply` yet; the mesh is valid and fully resolved",
            hint=f"run `veil apply -f {doc.file} --dry-run` to see what would be done")
    _show_plan(doc, resolved, options)


def _security_cas(mesh: Mesh) -> tuple[str, str, str | None]:
    for c in mesh.cas:
        if "security" in c.alias:
            return c.name, c.cas_url, c.tolerance
    c = mesh.cas[0]
    return c.name, c.cas_url, c.tolerance


def _show_plan(doc: Loaded, resolved: ResolvedMesh, options: ApplyOptions) -> None:
    mesh: Mesh = doc.model
    out = state.console
    cas_name, cas_url, tolerance = _security_cas(mesh)
    tol = parse_tolerance(tolerance)
    out.print(f"mesh {doc.file}: {len(resolved.services)} service(s), "
              f"namespace [bold]{resolved.namespace}[/bold], mode {options.mode}")
    out.print(f"sessions go to CAS [bold]{cas_name}[/bold] at {cas_url}")
    if tol.testing_only or tol.tolerate:
        flags = [n for n, on in (("trust-any", tol.trust_any), ("debug", tol.debug),
                                 ("ignore-signer", tol.ignore_signer)) if on]
        out.print(f"  tolerance: {', '.join([*flags, *tol.tolerate])}"
                  + ("  [yellow](testing only)[/yellow]" if tol.testing_only else ""))
    table = Table(title="services", show_lines=False)
    for col in ("service", "image", "session", "secrets"):
        table.add_column(col, overflow="fold")
    for s in resolved.services.values():
        table.add_row(s.name, s.image, f"{resolved.namespace}/{s.session}",
                      ", ".join(s.secret_refs) or "-")
    out.print(table)
    for s in resolved.services.values():
        env = Table(title=f"environment of {s.name}")
        for col in ("name", "value", "origin", "program"):
            env.add_column(col, overflow="fold")
        for row in env_rows(s):
            env.add_row(row.name, row.value, row.origin, "yes" if row.program else "no")
        out.print(env)
    where = options.target / ("helm" if options.output == "helm_chart" else "manifests")
    release = options.release or release_name(mesh.policy.namespace)
    out.print(f"would upload {len(resolved.services)} session(s) to CAS {cas_name} "
              f"({cas_url}):", soft_wrap=True)
    for s in resolved.services.values():
        out.print(f"  session {resolved.namespace}/{s.session}  (service {s.name}, "
                  f"{len(s.program_env)} variables, {len(s.injection_files)} injection files)",
                  soft_wrap=True)
    out.print(f"would write {'a Helm chart' if options.output == 'helm_chart' else 'manifests'}"
              f" to {where}/ (release {release})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
