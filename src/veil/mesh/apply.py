"""The use case "apply a mesh": descriptions → resolve → compile → upload → chart.

`apply_mesh` is the one function the CLI (`veil apply -f mesh.yaml`), `veil up` and the
platform call. It returns a `MeshResult` (what was planned and done, per session) and reports
progress through a callback; it prints nothing. Nothing is uploaded or written before every
service's environment resolved and every session compiled: all problems come out at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from veil.deploy.chart.names import release_name
from veil.errors import OperationalError, VeilError
from veil.manifest.load import Loaded
from veil.manifest.models import Mesh
from veil.manifest.tolerance import parse_tolerance
from veil.mesh.descriptions import Descriptions, Found, IndexThenRegistry, descriptions_for
from veil.mesh.extras import extra_policies, image_secrets
from veil.mesh.files import put_tree
from veil.mesh.plan import SessionPlan, known_hashes, plan_sessions, reviewable
from veil.mesh.store import SessionStore, Written, connect_cas
from veil.mesh.trust import expected_key, normalize_addr
from veil.policy.compile import CompiledSession, Mode, compile_mesh, security_cas
from veil.resolve.env import ResolvedMesh, resolve_mesh
from veil.session.model import Release

__all__ = ["Connect", "MeshOptions", "MeshResult", "Progress", "SessionOutcome", "apply_mesh",
           "release_name"]

Output = Literal["helm_chart", "yaml"]
# (stage, message): stages are describe, resolve, compile, cas, compare, upload, policies, chart
Progress = Callable[[str, str], None]
# (CAS address, the mesh's cas_key or None) -> a store whose identity was checked, and a warning
Connect = Callable[[str, str | None, bool], tuple[SessionStore, str | None]]


@dataclass(frozen=True)
class MeshOptions:
    mode: Mode = "production"
    release: str | None = None  # Helm release; default: `release_name(namespace)`
    target: Path = Path("target")
    output: Output = "helm_chart"  # yaml: also render the chart's objects to target/manifests
    dry_run: bool = False  # write policies and chart, upload nothing; compare when CAS answers
    diff_only: bool = False  # compare with CAS and stop: nothing written, nothing uploaded
    write_chart: bool = True
    cas_addr: str | None = None  # instead of the security CAS's cas_url (`veil up`'s own CAS)
    cas_key: str | None = None  # instead of the mesh's cas_key
    # sconectl's rolling release number: the chart's version 0.1.N, and recorded in the sessions
    # with `release` when given (`veil.session.model.Release`)
    release_version: int | None = None
    app_version: str | None = None  # `--set-version`, recorded as the chart's appVersion
    publish: bool = True  # False: leave `repo.destination`/`repo.signature` alone (`veil up`)


@dataclass(frozen=True)
class SessionOutcome:
    plan: SessionPlan
    written: Written | None = None  # after an upload: the new version

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def change(self) -> str:
        return self.plan.change


@dataclass
class MeshResult:
    file: str
    namespace: str
    mode: Mode
    release: str
    dry_run: bool
    cas_name: str
    cas_addr: str
    resolved: ResolvedMesh
    sessions: list[SessionOutcome] = field(default_factory=list)
    cas_key_fingerprint: str | None = None
    cas_key: str | None = None  # the CAS's public key (base64 DER) the chart's pods pin
    cas_unreachable: str | None = None  # a dry run that could not compare: why
    uploaded: bool = False
    policies_dir: Path | None = None
    chart_dir: Path | None = None
    manifests_dir: Path | None = None
    images: dict[str, str] = field(default_factory=dict)  # service -> image the chart runs
    target: Path = Path("target")
    output: Output = "helm_chart"
    release_version: int | None = None
    app_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)  # of the copies in repo.destination

    def config_id(self, service: str) -> str:
        """What the service's launcher names as SCONE_CONFIG_ID."""
        return f"{self.namespace}/{self.resolved.services[service].session}/{service}"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.sessions:
            out[o.change] = out.get(o.change, 0) + 1
        return out


def _default_connect(addr: str, mesh_key: str | None, trust_any: bool
                     ) -> tuple[SessionStore, str | None]:
    return connect_cas(addr, expected_key(addr, mesh_key, trust_any=trust_any))


def _quiet(_stage: str, _message: str) -> None:
    pass


def write_policies(target: Path, compiled: list[CompiledSession]) -> Path:
    """target/policies/<session>.json, as people review them: no secret values."""
    where = target / "policies"
    files = {f"{c.name}.json": json.dumps(reviewable(c.document.canonical()), indent=2,
                                          sort_keys=True, ensure_ascii=False) + "\n"
             for c in compiled}
    put_tree(where, files)
    return where


def apply_mesh(
    doc: Loaded,
    options: MeshOptions = MeshOptions(),
    *,
    descriptions: Descriptions | None = None,
    connect: Connect | None = None,
    progress: Progress | None = None,
) -> MeshResult:
    """Apply a loaded mesh (`veil.manifest.load.load_mesh`).

    `descriptions` finds each image's service description (default: the local index, then
    the registry); `connect` reaches the security CAS after checking its key (default: over
    HTTPS, key from the mesh / `veil cas trust` / `veil cas init`). User errors raise
    `UserError`/`ManifestError` before anything is sent; CAS refusals and unreachable services
    raise `VeilError` with CAS left as it was.
    """
    say = progress or _quiet
    mesh: Mesh = doc.model
    cas_entry = mesh.cas[security_cas(mesh)]
    addr = options.cas_addr or cas_entry.cas_url
    say("describe", f"finding the descriptions of {len(mesh.services)} service(s)")
    found: dict[str, Found] = descriptions_for(doc, descriptions or IndexThenRegistry())
    say("resolve", "resolving every service's environment")
    resolved = resolve_mesh(doc, {i: f.description for i, f in found.items()},
                            service_origins={i: dict(f.origins) for i, f in found.items()
                                             if f.origins})
    say("compile", "deriving the sessions")
    recorded = (Release(name=options.release, version=options.release_version)
                if options.release is not None or options.release_version is not None else None)
    compiled = compile_mesh(mesh, resolved, options.mode, file=doc.file,
                            image_secrets=image_secrets(doc), extra_policies=extra_policies(doc),
                            release=recorded)
    result = MeshResult(
        file=doc.file, namespace=resolved.namespace, mode=options.mode,
        release=options.release or release_name(resolved.namespace),
        dry_run=options.dry_run or options.diff_only, cas_name=cas_entry.name,
        cas_addr=normalize_addr(addr), resolved=resolved,
        images={s.name: _pinned(s.image, found[s.image]) for s in mesh.services},
        target=options.target, output=options.output, release_version=options.release_version,
        app_version=options.app_version)
    if not result.dry_run:
        unmeasured = [s.name for s in resolved.services.values()
                      if not s.description.measurement]
        if unmeasured:
            raise OperationalError(
                "no measurement recorded for " + ", ".join(unmeasured) + ": CAS could not "
                "admit them", hint="build their images with `veil apply -f service.yaml`")
    if options.write_chart and not options.diff_only:
        from veil.mesh.chart import check_chart_inputs

        check_chart_inputs(doc, result)
    if options.dry_run and not options.diff_only:
        result.policies_dir = write_policies(options.target, compiled)
        say("policies", f"wrote {len(compiled)} session(s) to {result.policies_dir}")
    if mesh.repo is not None and options.publish:
        from veil.mesh.images import check_key, publish

        if result.dry_run:
            publish(doc, result, dry_run=True, say=say)
        else:
            check_key(doc)  # a missing or wrong key stops here, before anything is sent
    trust_any = parse_tolerance(cas_entry.tolerance).trust_any
    key = options.cas_key or cas_entry.cas_key
    say("cas", f"checking the identity of CAS {cas_entry.name} at {result.cas_addr}")
    try:
        store, warning = (connect or _default_connect)(addr, key, trust_any)
    except VeilError as err:
        if not result.dry_run:
            raise
        result.cas_unreachable = err.message
        result.cas_key = key
        result.sessions = [SessionOutcome(p) for p in plan_sessions(compiled, None)]
        _chart(doc, result, options, say)
        return result
    try:
        if warning:
            result.warnings.append(warning)
        result.cas_key_fingerprint = store.key_fingerprint
        result.cas_key = store.key
        say("compare", f"reading the current versions of {len(compiled)} session(s)")
        current = store.current(resolved.namespace, [c.name for c in compiled],
                                known_hashes(compiled))
        plans = plan_sessions(compiled, current)
        if result.dry_run:
            result.sessions = [SessionOutcome(p) for p in plans]
            if not options.diff_only:
                _chart(doc, result, options, say)
            return result
        if mesh.repo is not None and options.publish:  # CAS checked out: copy, sign, commit
            from veil.mesh.images import publish

            publish(doc, result, dry_run=False, say=say)
        changed = [p for p in plans if p.change != "unchanged" or p.by_cas]
        written: dict[str, Written] = {}
        if changed:
            say("upload", f"writing {len(changed)} session(s) in one transaction")
            for w in store.commit(resolved.namespace, [p.payload() for p in changed]):
                written[w.name] = w
        result.uploaded = True
        result.sessions = [_outcome(p, written.get(p.name)) for p in plans]
    finally:
        store.close()
    _chart(doc, result, options, say)
    return result


def _outcome(plan: SessionPlan, written: Written | None) -> SessionOutcome:
    if not plan.by_cas:
        return SessionOutcome(plan, written)
    if written is None or written.version == plan.current_version:  # CAS: nothing changed
        return SessionOutcome(replace(plan, diff=()))
    diff = ("explicit secret value(s) changed (CAS wrote a new version; values are not shown)",)
    return SessionOutcome(replace(plan, change="updated", diff=diff), written)


def _pinned(image: str, found: Found) -> str:
    """The image by digest when its digest is known (the chart must run what was measured)."""
    if not found.digest:
        return image
    from veil.image.reference import parse_reference

    return f"{parse_reference(image).name}@{found.digest}"


def _chart(doc: Loaded, result: MeshResult, options: MeshOptions, say: Progress) -> None:
    if not options.write_chart or options.diff_only:
        return
    from veil.mesh.chart import write_chart  # the chart's data and files

    write_chart(doc, result, options, say)
