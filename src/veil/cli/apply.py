"""`veil apply -f FILE`: a service manifest builds an image, a mesh deploys an application.

The file's `kind` decides which. `--print-defaults` (mesh only) writes the mesh with every
variable its services declare, for the seeds' patch workflow.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import typer

from veil.cli._app import state
from veil.cli._apply_service import apply_service
from veil.cli._mesh import descriptions_for, print_warnings
from veil.cli._options import (
    ApplyOptions,
    Mode,
    Output,
    check_flags_for_kind,
    refuse_unsupported,
    set_version_default,
    version_warning,
)
from veil.cli._output import write_output
from veil.deploy.chart.names import RELEASE_RE, release_name
from veil.errors import OperationalError, UserError
from veil.manifest.load import Loaded, load_document, read_manifest
from veil.manifest.models import GenService, Mesh

__all__ = ["register", "release_name"]


_SERVICE = "Service manifest"
_MESH = "Mesh"
_SCONECTL = "sconectl's, not honoured (one line says what Veil does instead)"


def apply(
    ctx: typer.Context,
    file: Path = typer.Option(..., "-f", "--file-name", "--filename",
                              help="Manifest to apply: kind genservice or mesh."),
    dry_run: bool = typer.Option(False, "-d", "--dry-run",
                                 help="Validate and show what would be done."),
    mode: Mode = typer.Option("production", "--mode", help="debug or production."),
    target: Path = typer.Option(Path("target"), "-t", "--target", "--target-directory",
                                help="Directory for build contexts and charts."),
    defaults: bool = typer.Option(
        False, "-p", "--print-defaults",
        help="Print the variables: a service's (default or must be set), or the mesh with "
        "every variable its services declare."),
    out: Path | None = typer.Option(None, "--file",
                                    help="Where --print-defaults writes (default: stdout)."),
    set_version: str | None = typer.Option(
        None, "--set-version", metavar="VERSION",
        help="Recorded with the image or chart (sconectl's; default: $SCONECTL_VERSION)."),
    host_pwd: Path | None = typer.Option(
        None, "--host-pwd", metavar="DIR",
        help="sconectl's host working directory; Veil runs on the host, so it is the "
        "current directory."),
    short_n: bool = typer.Option(False, "-n", help="--no-push for a service, --no-pull for a "
                                 "mesh."),
    helm_template: Path | None = typer.Option(
        None, "-h", "--helm-template", metavar="DIR", rich_help_panel=_SERVICE,
        help="Chart templates the service carries to its mesh's chart (here -h is not help)."),
    no_push: bool = typer.Option(False, "--no-push", rich_help_panel=_SERVICE,
                                 help="Build the image but do not push it."),
    release: str | None = typer.Option(
        None, "--release", rich_help_panel=_MESH,
        help="Helm release name, also recorded in the sessions."),
    release_version: int | None = typer.Option(
        None, "--release-version", min=0, metavar="N", rich_help_panel=_MESH,
        help="Rolling release number, recorded in the chart and the sessions."),
    no_pull: bool = typer.Option(
        False, "--no-pull", rich_help_panel=_MESH,
        help="Take service descriptions from the local index only, never a registry."),
    output: Output = typer.Option("helm_chart", "-o", "--output", help="helm_chart or yaml.",
                                  rich_help_panel=_MESH),
    diff: bool = typer.Option(False, "--diff", rich_help_panel=_MESH,
                              help="Print what would change in CAS, per session, and stop."),
    policy_namespace: str | None = typer.Option(
        None, "--policy-namespace", metavar="NS", rich_help_panel=_MESH,
        help="CAS namespace of the sessions (instead of policy.namespace)."),
    maa: str | None = typer.Option(None, "--maa", metavar="URL", help=_SCONECTL,
                                   rich_help_panel="sconectl"),
    otp: bool = typer.Option(False, "--otp", help=_SCONECTL, rich_help_panel="sconectl"),
    signing_url: str | None = typer.Option(None, "--signing-url", metavar="URL",
                                           help=_SCONECTL, rich_help_panel="sconectl"),
    signing_online: bool = typer.Option(False, "--signing-online", help=_SCONECTL,
                                        rich_help_panel="sconectl"),
    signing_k8scontext: str | None = typer.Option(
        None, "--signing-k8scontext", metavar="CONTEXT", help=_SCONECTL,
        rich_help_panel="sconectl"),
) -> None:
    """Apply a service manifest or a mesh (dispatching on `kind`)."""
    refuse_unsupported({"--maa": maa, "--otp": otp, "--signing-url": signing_url,
                        "--signing-online": signing_online,
                        "--signing-k8scontext": signing_k8scontext})
    given = _given(ctx)
    if release is not None and not (len(release) <= 53 and RELEASE_RE.fullmatch(release)):
        raise UserError(f"--release {release!r} is not a Helm release name",
                        hint="lower-case letters, digits, - and . ; at most 53 characters")
    _check_host_pwd(host_pwd)
    if set_version is None:
        set_version, source = set_version_default()
        if set_version is not None:
            state.debug(f"--set-version {set_version} from ${source}")
    if set_version is not None:
        warning = version_warning(set_version)
        if warning:
            state.warn(warning)
    _sconectl_environment()
    text = read_manifest(file)
    name = "<stdin>" if str(file) == "-" else str(file)
    doc = load_document(name, text)
    print_warnings(doc.warnings)
    check_flags_for_kind(doc.kind, name, given)
    options = ApplyOptions(
        dry_run=dry_run, mode=mode, target=target,
        push=not (no_push or (short_n and doc.kind == "genservice")),
        verbose=state.verbose, release=release, output=output, set_version=set_version,
        release_version=release_version,
        pull=not (no_pull or (short_n and doc.kind == "mesh")),
        policy_namespace=policy_namespace, helm_template=helm_template, given=given)
    if doc.kind == "genservice":
        assert isinstance(doc.model, GenService)
        if defaults:
            from veil.resolve.service_defaults import service_defaults

            _write(service_defaults(doc.model, name), out)
            return
        if out is not None:
            raise UserError("--file names the output of --print-defaults; add --print-defaults")
        apply_service(file, doc.model, options, positions=doc.positions)
        return
    if defaults:
        from veil.resolve.defaults import print_defaults

        descriptions, _ = descriptions_for(doc)
        _write(print_defaults(text, name, descriptions), out)
        return
    if out is not None:
        raise UserError("--file names the output of --print-defaults; add --print-defaults")
    _apply_mesh(doc, options, diff)


def _given(ctx: typer.Context) -> frozenset[str]:
    """The long names of the options the user put on the line (not defaults)."""
    from typer._click.core import ParameterSource

    out: set[str] = set()
    for p in ctx.command.params:
        if ctx.get_parameter_source(p.name or "") == ParameterSource.COMMANDLINE:
            out.update(o for o in p.opts if o.startswith("--"))
    return frozenset(out)


def _check_host_pwd(host_pwd: Path | None) -> None:
    """sconectl runs in a container with the host's working directory mounted as its own and
    is told that directory's host path. Veil runs on the host: the current directory is it."""
    if host_pwd is None:
        return
    if not host_pwd.is_dir():
        raise UserError(f"--host-pwd {host_pwd}: no such directory")
    if host_pwd.resolve() != Path.cwd().resolve():
        state.warn(f"--host-pwd {host_pwd}: Veil runs on the host and resolves paths against "
                   f"the current directory ({Path.cwd()}), not against {host_pwd}")


def _sconectl_environment() -> None:
    """sconectl's environment variables that mean nothing here: said at -v, never acted on."""
    for var, why in (
        ("SCONECTL_REPO", "Veil runs no CLI image; base images come from build.from or "
                          "Veil's default"),
        ("SCONECTL_NOPULL", "Veil runs no CLI image; nothing to pull"),
        ("SCONECTL_CAS_CONFIG", "Veil pins each CAS by its key (cas_key, or `veil cas init`)"),
        ("KUBECONFIG", "Veil writes charts and does not contact Kubernetes"),
    ):
        if os.environ.get(var):
            state.debug(f"${var} is set and not used: {why}")


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        write_output(out, text, option="--file")
        state.info(f"wrote {out}")


def _apply_mesh(doc: Loaded, options: ApplyOptions, diff: bool) -> None:
    from veil.mesh import IndexThenRegistry, MeshOptions, apply_mesh

    if options.policy_namespace is not None:
        _override_namespace(doc, options.policy_namespace)
    _locate_image_secrets(doc)
    opts = MeshOptions(mode=options.mode, release=options.release, target=options.target,
                       output=options.output, dry_run=options.dry_run, diff_only=diff,
                       release_version=options.release_version,
                       app_version=options.set_version)
    lookup = IndexThenRegistry(debug=state.debug, pull=options.pull)
    with state.status("applying the mesh") as status:
        result = apply_mesh(doc, opts, descriptions=lookup,
                            progress=lambda _stage, msg: status.update(msg))
    from veil.cli._mesh_result import show_result  # the mesh use case: load when used

    show_result(doc, result, diff=diff)
    if diff and result.cas_unreachable:
        raise OperationalError(f"--diff could not compare with CAS: {result.cas_unreachable}")


def _override_namespace(doc: Loaded, namespace: str) -> None:
    """`--policy-namespace NS`: the sessions go to NS instead of policy.namespace."""
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise UserError(f"--policy-namespace {namespace!r} is not a usable CAS namespace",
                        hint="letters, digits, _ . - (starting with a letter, digit or _)")
    mesh: Mesh = doc.model
    doc.model = mesh.model_copy(
        update={"policy": mesh.policy.model_copy(update={"namespace": namespace})})


def _locate_image_secrets(doc: Loaded) -> None:
    """`services[].image_secrets` as sconectl reads them: in the current directory (see
    `veil.image.inputs`); each is rewritten to the file found, so the mesh reads that one."""
    from veil.errors import ManifestError
    from veil.image.inputs import WorkDir, locate_input

    mesh: Mesh = doc.model
    if doc.file in ("<stdin>", "<input>"):
        return
    workdir = WorkDir(Path.cwd(), beside_manifest=state.prog != "sconectl")
    problems = []
    services = []
    for i, svc in enumerate(mesh.services):
        if svc.image_secrets:
            found = locate_input(svc.image_secrets, workdir, Path(doc.file).parent, what="file")
            if found.note:
                state.warn(found.note)
            if found.problem:
                problems.append(doc.positions.problem(
                    found.problem, ("services", i, "image_secrets"), value=svc.image_secrets,
                    allowed="a file relative to the current directory"
                    + ("" if workdir.beside_manifest else ", as sconectl reads it")
                    + (" or to the mesh file's folder" if workdir.beside_manifest else "")))
            else:
                svc = svc.model_copy(update={"image_secrets": str(found.path.absolute())})
        services.append(svc)
    if problems:
        raise ManifestError(problems, summary=f"cannot read the image_secrets of {doc.file}")
    doc.model = mesh.model_copy(update={"services": services})


_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def register(app: typer.Typer) -> None:
    # `-h` is sconectl's --helm-template here; help is --help only
    app.command("apply", context_settings={"help_option_names": ["--help"]})(apply)
