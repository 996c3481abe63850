"""The policy compiler: a resolved mesh and a mode become CAS session documents. Pure.

One session per service, named after the service (`<namespace>/<service>`), holding that
service's measurement, command, working directory, program environment (least privilege: its
`local` values and declared `global` inputs only), injection files, and the secrets it defines
or refers to. A secret from a service's `secrets.global` is ONE value for the whole mesh: it
lives in the mesh's shared session `GLOBAL_SESSION`, which exports it to every service session
that declares or imports it, so adding or removing a service never regenerates it. A
`secrets.local` secret belongs to its service's session alone (unless that service exports it).

`--mode debug` sessions accept simulation evidence; production sessions do not. The CAS
`tolerance` flags `-C -G -S` and `policy.tolerate` / `policy.ignore_advisories` land in every
session's `security.attestation`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from veil.errors import ManifestError, Problem
from veil.manifest.description import ServiceDescription
from veil.manifest.models import Mesh, Secret
from veil.manifest.tolerance import parse_tolerance
from veil.resolve.env import ResolvedMesh, ResolvedService
from veil.session.model import (
    AttestationPolicy,
    ExportTarget,
    Image,
    InjectionFile,
    Release,
    SecretDef,
    Security,
    Service,
    ServiceAttestation,
    SessionDoc,
)

__all__ = ["GLOBAL_SESSION", "CompiledSession", "Mode", "compile_mesh", "security_cas",
           "security_policy"]

Mode = Literal["debug", "production"]
# the mesh's shared session for `secrets.global`; a service of that name is refused
GLOBAL_SESSION = "veil-global-secrets"


@dataclass(frozen=True)
class CompiledSession:
    """One session of a mesh: its document and, for a service's session, the config id the
    service's launcher names (`SCONE_CONFIG_ID`)."""

    name: str
    document: SessionDoc
    service: str | None = None  # the mesh service; None for the shared and extra sessions
    config_id: str | None = None
    kind: Literal["service", "shared", "extra"] = "service"


@dataclass
class _Shared:
    """A global secret: its one definition and who uses it."""

    secret: Secret
    declared_by: list[str] = field(default_factory=list)
    importers: set[str] = field(default_factory=set)


def security_cas(mesh: Mesh) -> int:
    """Index of the CAS entry with the `security` alias (the first entry if none has it)."""
    return next((i for i, c in enumerate(mesh.cas) if "security" in c.alias), 0)


def _words(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [w for item in items for w in re.split(r"[\s,]+", str(item)) if w]


def security_policy(mesh: Mesh, mode: Mode) -> Security:
    """What attestation accepts for every session of this mesh."""
    tol = parse_tolerance(mesh.cas[security_cas(mesh)].tolerance)
    tolerate = sorted({*tol.tolerate, *_words(mesh.policy.tolerate)})
    return Security(attestation=AttestationPolicy(
        mode=mode, tolerate=tolerate,
        ignore_advisories=sorted(set(_words(mesh.policy.ignore_advisories)))))


def _definition(s: Secret, exports: Sequence[ExportTarget] = ()) -> SecretDef:
    return SecretDef.model_validate({
        "name": s.name, "kind": s.kind, "size": s.size, "value": s.value,
        "private_key": s.private_key, "issuer": s.issuer, "dns": list(s.dns or []),
        "common_name": s.common_name, "valid_for": s.valid_for, "key_type": s.key_type,
        "export": [e.model_dump(exclude_none=True) for e in exports],
        "external": True if s.external else None,
    })


def _imported(name: str, session: str) -> SecretDef:
    return SecretDef.model_validate({"name": name, "import": {"session": session}})


def _declared_exports(s: Secret) -> list[str]:
    if s.export is None:
        return []
    return [s.export] if isinstance(s.export, str) else list(s.export)


class _Compiler:
    def __init__(self, mesh: Mesh, resolved: ResolvedMesh, file: str) -> None:
        self.mesh = mesh
        self.resolved = resolved
        self.file = file
        self.problems: list[Problem] = []
        self.shared: dict[str, _Shared] = {}
        # (exporting session, secret) -> sessions it must export to
        self.exports: dict[tuple[str, str], set[str]] = {}
        self.local: dict[str, dict[str, Secret]] = {
            name: {s.name: s for s in svc.description.secrets
                   if s.name not in svc.description.secrets_global}
            for name, svc in resolved.services.items()}

    def problem(self, message: str, allowed: str | None = None) -> None:
        self.problems.append(Problem(message, file=self.file, allowed=allowed))

    def collect_shared(self) -> None:
        for name, svc in self.resolved.services.items():
            d = svc.description
            for s in d.secrets:
                if s.name not in d.secrets_global:
                    continue
                known = self.shared.get(s.name)
                if known is None:
                    self.shared[s.name] = _Shared(s, [name])
                elif known.secret != s:
                    first = known.declared_by[0]
                    self.problem(
                        f"global secret `{s.name}` is defined differently by services "
                        f"`{first}` ({self.resolved.services[first].image}) and `{name}` "
                        f"({svc.image}); a global secret is one value for the mesh",
                        allowed="the same definition in every service, or a local secret")
                else:
                    known.declared_by.append(name)
        for s_name, sh in self.shared.items():
            for dep in (sh.secret.private_key, sh.secret.issuer):
                if dep is not None and dep not in self.shared:
                    self.problem(f"global secret `{s_name}` is made from `{dep}`, which is not a "
                                 "global secret; a global secret can only use global ones",
                                 allowed=f"move `{dep}` to secrets.global")

    def resolve_import(self, service: str, text: str) -> SecretDef | None:
        """An entry of `secrets.import` as a session import; exports are recorded."""
        parts = text.split("/")
        name = parts[-1]
        if len(parts) == 1:
            if name in self.shared:
                self.shared[name].importers.add(service)
                return _imported(name, GLOBAL_SESSION)
            owners = [o for o, secrets in self.local.items()
                      if o != service and name in secrets
                      and self._may_export(secrets[name], service)]
            if len(owners) != 1:
                why = "no service of the mesh exports it" if not owners else (
                    "several services export it: " + ", ".join(sorted(owners)))
                self.problem(f"service `{service}` imports secret `{name}`, but {why}",
                             allowed="a global secret of the mesh, a local secret exported "
                             "by one service, or SESSION/SECRET, NAMESPACE/SESSION/SECRET")
                return None
            return self._import_local(service, owners[0], name)
        if len(parts) == 2:
            session, name = parts
            if session in self.local and name in self.local[session]:
                return self._import_local(service, session, name)
            return _imported(name, session)
        if len(parts) == 3:
            ns, session, name = parts
            return _imported(name, f"{ns}/{session}")
        self.problem(f"service `{service}`: cannot read import {text!r}",
                     allowed="SECRET, SESSION/SECRET or NAMESPACE/SESSION/SECRET")
        return None

    @staticmethod
    def _may_export(s: Secret, to: str) -> bool:
        targets = _declared_exports(s)
        return "*" in targets or to in targets

    def _import_local(self, service: str, owner: str, name: str) -> SecretDef:
        self.exports.setdefault((owner, name), set()).add(service)
        return _imported(name, owner)

    def _exports(self, session: str, s: Secret, extra: set[str]) -> list[ExportTarget]:
        """Declared exports outside the mesh, plus the mesh sessions that import it."""
        out: set[tuple[str, str | None]] = {(t, None) for t in extra}
        for e in _declared_exports(s):
            if e == "*" or e in self.resolved.services:
                continue  # inside the mesh: exported to exactly the sessions that import it
            ns, _, sess = e.rpartition("/")
            out.add((sess, ns or None))
        return [ExportTarget(session=t, namespace=ns)
                for t, ns in sorted(out, key=lambda x: (x[1] or "", x[0]))]

    def service_session(self, svc: ResolvedService, security: Security,
                        imports: list[SecretDef], extra: Sequence[SecretDef],
                        release: Release | None = None) -> SessionDoc:
        d = svc.description
        secrets: list[SecretDef] = []
        for s in d.secrets:
            if s.name in d.secrets_global:
                self.shared[s.name].importers.add(svc.name)
                secrets.append(_imported(s.name, GLOBAL_SESSION))
            else:
                targets = self.exports.get((svc.name, s.name), set())
                secrets.append(_definition(s, self._exports(svc.name, s, targets)))
        secrets.extend(imports)
        secrets.extend(extra)
        files = [InjectionFile.model_validate(
                     {"path": f.path, "content": f.content,
                      **({"mode": f.permission} if f.permission is not None else {})})
                 for f in svc.injection_files]
        return SessionDoc(
            name=svc.session,
            release=release,
            security=security,
            services=[Service(
                name=svc.name, image_name=svc.name, command=d.command, pwd=d.pwd,
                environment={n: v.value for n, v in svc.program_env.items()},
                attestation=ServiceAttestation(measurement=_measurements(d)),
            )],
            secrets=sorted(secrets, key=lambda x: x.name),
            images=[Image(name=svc.name, injection_files=files)],
        )


def _measurements(d: ServiceDescription) -> list[str]:
    """The image's measurement, and during a rolling update (`build.stable`) the measurement of
    the image deployed now: both are accepted until an apply without `stable`."""
    out = [d.measurement] if d.measurement else []
    if d.stable is not None and d.stable.measurement not in out:
        out.append(d.stable.measurement)
    return out


def compile_mesh(
    mesh: Mesh,
    resolved: ResolvedMesh,
    mode: Mode,
    *,
    file: str = "<mesh>",
    image_secrets: Mapping[str, Sequence[SecretDef]] | None = None,
    extra_policies: Sequence[SessionDoc] = (),
    release: Release | None = None,
) -> list[CompiledSession]:
    """Every session of the mesh, in upload order: the shared session (if any global secret),
    one per service (mesh order), then `extra_policies`. Problems are raised together.
    `release` (`--release`/`--release-version`) is recorded in every session derived here;
    `extra_policies` are sent as their authors wrote them."""
    c = _Compiler(mesh, resolved, file)
    if GLOBAL_SESSION in resolved.services:
        c.problem(f"the service name `{GLOBAL_SESSION}` is reserved for the mesh's shared "
                  "secrets", allowed="another service name")
    c.collect_shared()
    security = security_policy(mesh, mode)
    imports = {name: [d for d in (c.resolve_import(name, t) for t in svc.description.imports)
                      if d is not None]
               for name, svc in resolved.services.items()}
    extra = dict(image_secrets or {})
    for name, defs in extra.items():
        own = {s.name for s in resolved.services[name].description.secrets}
        own |= {d.name for d in imports[name]}
        for d in defs:
            if d.name in own:
                c.problem(f"service `{name}`: image_secrets defines `{d.name}`, which the "
                          "service already defines or imports", allowed="another name")
    docs = {name: c.service_session(svc, security, imports[name], extra.get(name, ()), release)
            for name, svc in resolved.services.items()}
    taken = {*docs, GLOBAL_SESSION}
    for x in extra_policies:
        if x.name in taken:
            c.problem(f"extra_policies: session `{x.name}` is also a session of the mesh",
                      allowed="a name that is neither a service nor " + GLOBAL_SESSION)
        taken.add(x.name)
    if c.problems:
        raise ManifestError(c.problems, summary=f"{len(c.problems)} problem"
                            f"{'s' if len(c.problems) != 1 else ''} deriving the sessions "
                            f"of {file}")
    out: list[CompiledSession] = []
    if c.shared:
        shared = SessionDoc(
            name=GLOBAL_SESSION, release=release, security=security,
            secrets=[_definition(sh.secret, c._exports(GLOBAL_SESSION, sh.secret,
                                                        sh.importers))
                     for _, sh in sorted(c.shared.items())])
        out.append(CompiledSession(GLOBAL_SESSION, shared, kind="shared"))
    ns = resolved.namespace
    for name, doc in docs.items():
        out.append(CompiledSession(doc.name, doc, name, f"{ns}/{doc.name}/{name}"))
    out.extend(CompiledSession(x.name, x, kind="extra") for x in extra_policies)
    return out
