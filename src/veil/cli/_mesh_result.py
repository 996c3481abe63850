"""Printing what `veil apply -f mesh.yaml` planned and did (the use case returns it as data)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from veil.cli._app import state
from veil.manifest.load import Loaded
from veil.manifest.models import Mesh
from veil.manifest.tolerance import parse_tolerance
from veil.policy.compile import security_cas
from veil.resolve.explain import env_rows

if TYPE_CHECKING:
    from veil.mesh.apply import MeshResult

__all__ = ["show_result"]

_STYLE = {"created": "green", "updated": "yellow", "unchanged": "dim", "unknown": "cyan"}


def _say(line: str) -> None:
    state.console.print(line, soft_wrap=True, markup=False, highlight=False)


def _diff(lines: tuple[str, ...]) -> None:
    for ln in lines:
        style = ("green" if ln.startswith("+") and not ln.startswith("+++") else
                 "red" if ln.startswith("-") and not ln.startswith("---") else None)
        state.console.print("    " + ln, style=style, soft_wrap=True, markup=False,
                            highlight=False)


def _header(doc: Loaded, result: MeshResult) -> None:
    mesh: Mesh = doc.model
    entry = mesh.cas[security_cas(mesh)]
    _say(f"mesh {doc.file}: {len(result.resolved.services)} service(s), namespace "
         f"{result.namespace}, mode {result.mode}")
    key = f", key {result.cas_key_fingerprint}" if result.cas_key_fingerprint else ""
    _say(f"sessions go to CAS {result.cas_name} at {result.cas_addr}{key}")
    tol = parse_tolerance(entry.tolerance)
    if tol.testing_only or tol.tolerate:
        flags = [n for n, on in (("trust-any", tol.trust_any), ("debug", tol.debug),
                                 ("ignore-signer", tol.ignore_signer)) if on]
        _say(f"  tolerance: {', '.join([*flags, *tol.tolerate])}"
             + ("  (testing only)" if tol.testing_only else ""))
    for w in result.warnings:
        state.err.print(f"warning: {w}", style="yellow", soft_wrap=True, markup=False)


def _environments(result: MeshResult) -> None:
    table = Table(title="services", show_lines=False)
    for col in ("service", "image", "session", "secrets"):
        table.add_column(col, overflow="fold")
    for s in result.resolved.services.values():
        table.add_row(s.name, result.images.get(s.name, s.image),
                      f"{result.namespace}/{s.session}", ", ".join(s.secret_refs) or "-")
    state.console.print(table)
    for s in result.resolved.services.values():
        env = Table(title=f"environment of {s.name}")
        for col in ("name", "value", "origin", "program"):
            env.add_column(col, overflow="fold")
        for row in env_rows(s):
            env.add_row(row.name, row.value, row.origin, "yes" if row.program else "no")
        state.console.print(env)


def show_result(doc: Loaded, result: MeshResult, *, diff: bool = False) -> None:
    _header(doc, result)
    if result.dry_run and not diff:
        _environments(result)
    if result.cas_unreachable:
        _say(f"could not compare with CAS: {result.cas_unreachable}")
    verb = "would upload" if result.dry_run else "uploaded"
    if result.dry_run and result.cas_unreachable:
        _say(f"{verb} {len(result.sessions)} session(s) to CAS {result.cas_name} "
             f"({result.cas_addr}):")
    services = result.resolved.services
    for o in result.sessions:
        c = o.plan.session
        what = f"service {c.service}" if c.service else c.kind + " session"
        if c.service and c.service in services:
            s = services[c.service]
            what += (f", {len(s.program_env)} variables, {len(s.injection_files)} "
                     "injection files")
        change = o.change if o.change != "unknown" else "not compared"
        version = ""
        if o.written is not None:
            version = f" → version {o.written.version}"
        elif o.plan.current_version is not None:
            version = f" (version {o.plan.current_version})"
        state.console.print(
            f"  session {result.namespace}/{o.name}  ({what})  "
            f"[{_STYLE.get(o.change, '')}]{change}{version}[/]",
            soft_wrap=True, highlight=False)
        if o.plan.diff and (diff or (result.dry_run and o.change == "updated")):
            _diff(o.plan.diff)
    counts = result.counts()
    if not result.cas_unreachable:
        summary = ", ".join(f"{counts[k]} {k}" for k in ("created", "updated", "unchanged")
                            if counts.get(k))
        _say(("would be: " if result.dry_run else "") + (summary or "no sessions"))
    if result.policies_dir is not None:
        _say(f"wrote the sessions (no secret values) to {result.policies_dir}/")
    version = ("" if result.release_version is None
               else f", release version {result.release_version}")
    if result.chart_dir is not None:
        _say(f"wrote the Helm chart to {result.chart_dir}/ (release {result.release}{version})")
    if result.manifests_dir is not None:
        _say(f"wrote manifests to {result.manifests_dir}/ (release {result.release}{version})")
    if result.chart_dir is None and result.dry_run and not diff:
        where = result.target / ("helm" if result.output == "helm_chart" else "manifests")
        what = "a Helm chart" if result.output == "helm_chart" else "manifests"
        _say(f"would write {what} to {where}/ (release {result.release}{version})")
    if result.app_version is not None:
        _say(f"recorded: --set-version {result.app_version}")
    if result.chart_dir is not None and not result.dry_run:
        _say(f"next: helm install {result.release} {result.chart_dir}")
