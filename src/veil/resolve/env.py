"""Resolving a mesh: each service's environment with provenance, templates and secret references.

Precedence, lowest first (SPEC 3.1):
    1. the service manifest's `global` defaults
    2. mesh `env` of service `global`, then of `helm`
    3. mesh `env` of that service (and `services[].env`)
    4. the service manifest's `local` values — a level-3 entry naming one is an error
Within a level the later entry wins; a `null` value is a placeholder that defines nothing.
The program sees only its `local` values and declared `global` inputs (least privilege); the
other variables feed templates and Helm values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from veil.errors import ManifestError, Problem
from veil.manifest.description import ServiceDescription
from veil.manifest.load import Loaded
from veil.manifest.models import GlobalEnvVar, Mesh, MeshEnvGroup
from veil.manifest.refs import find_secret_refs
from veil.resolve.template import TemplateError, has_template, render, variables_of

__all__ = [
    "EnvEntry",
    "EnvValue",
    "Origin",
    "ResolvedFile",
    "ResolvedMesh",
    "ResolvedService",
    "mesh_entries",
    "origins_of_service",
    "resolve_mesh",
]


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a level of the precedence and a place in a file."""

    level: str  # service default | mesh global | mesh helm | mesh service | service local | mesh
    file: str | None = None
    line: int | None = None
    path: tuple[str | int, ...] | None = None  # in the mesh, for positioned problems

    def __str__(self) -> str:
        where = self.file or "?"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where} ({self.level})"


@dataclass(frozen=True)
class EnvValue:
    name: str
    value: str
    origin: Origin
    secret_refs: tuple[str, ...] = ()  # names of CAS secrets the value refers to


@dataclass(frozen=True)
class EnvEntry:
    """One `{name, value}` of a mesh, flattened: which section it targets and where it is."""

    target: str  # global | helm | <service>
    name: str
    value: str | None
    path: tuple[str | int, ...]
    line: int | None


@dataclass(frozen=True)
class ResolvedFile:
    path: str
    content: str
    permission: str | int | None
    secret_refs: tuple[str, ...]


@dataclass
class ResolvedService:
    name: str
    image: str
    description: ServiceDescription
    env: dict[str, EnvValue]  # every variable the service sees (templates, Helm)
    program_env: dict[str, EnvValue]  # what the program gets: local + declared global
    context: dict[str, Any]  # template context
    injection_files: list[ResolvedFile]
    secret_refs: tuple[str, ...]  # every CAS secret the service refers to, sorted
    session: str


@dataclass
class ResolvedMesh:
    namespace: str
    services: dict[str, ResolvedService]
    helm_env: dict[str, EnvValue]
    facts: dict[str, Any] = field(default_factory=dict)


def mesh_entries(doc: Loaded) -> list[EnvEntry]:
    """Every env entry of the mesh in order of precedence within a level (file order)."""
    mesh: Mesh = doc.model
    pos = doc.positions
    out: list[EnvEntry] = []
    for i, svc in enumerate(mesh.services):
        for j, var in enumerate(svc.env):
            path: tuple[str | int, ...] = ("services", i, "env", j)
            out.append(EnvEntry(svc.name, var.name, var.value, path, pos.at(path)[0]))
    for i, item in enumerate(mesh.env):
        if isinstance(item, GlobalEnvVar):
            path = ("env", i)
            out.append(EnvEntry("global", item.name, item.value, path, pos.at(path)[0]))
        elif isinstance(item, MeshEnvGroup):
            for j, var in enumerate(item.env):
                path = ("env", i, "env", j)
                out.append(EnvEntry(item.service, var.name, var.value, path, pos.at(path)[0]))
    return out


def _facts(mesh: Mesh) -> dict[str, Any]:
    cas: dict[str, dict[str, Any]] = {}
    facts: dict[str, Any] = {"namespace": mesh.policy.namespace, "cas": cas}
    for c in mesh.cas:
        cas[c.name] = {"cas_url": c.cas_url, "cas_key": c.cas_key, "alias": list(c.alias)}
        # sconectl exports a CAS's url as {{cas_<name>_cas_url}}
        facts[f"cas_{c.name}_cas_url"] = c.cas_url
    return facts


class _Resolver:
    def __init__(self, doc: Loaded, descriptions: dict[str, ServiceDescription],
                 service_origins: dict[str, dict[str, Origin]]) -> None:
        self.doc = doc
        self.mesh: Mesh = doc.model
        self.descriptions = descriptions
        self.service_origins = service_origins
        self.entries = mesh_entries(doc)
        self.problems: list[Problem] = []
        self.facts = _facts(self.mesh)

    def _problem(self, message: str, path: tuple[str | int, ...], **kw: Any) -> None:
        self.problems.append(self.doc.positions.problem(message, path, **kw))

    def _mesh_origin(self, e: EnvEntry) -> Origin:
        level = {"global": "mesh global", "helm": "mesh helm"}.get(e.target, "mesh service")
        return Origin(level, self.doc.file, e.line, (*e.path, "value"))

    def _svc_origin(self, desc: ServiceDescription, section: str, name: str) -> Origin:
        level = "service local" if section == "local" else "service default"
        found = self.service_origins.get(desc.image, {}).get(f"{section}:{name}")
        return found or Origin(level, f"image {desc.image}")

    def helm_env(self) -> dict[str, EnvValue]:
        out: dict[str, EnvValue] = {}
        for e in self.entries:
            if e.target in ("global", "helm") and e.value is not None:
                out[e.name] = EnvValue(e.name, e.value, self._mesh_origin(e))
        return out

    def service(self, index: int) -> ResolvedService | None:
        ms = self.mesh.services[index]
        desc = self.descriptions[ms.image]
        env: dict[str, EnvValue] = {}
        for g in desc.global_env:
            if g.value is not None:
                env[g.name] = EnvValue(g.name, g.value, self._svc_origin(desc, "global", g.name))
        for level in ("global", "helm"):
            for e in self.entries:
                if e.target == level and e.value is not None:
                    env[e.name] = EnvValue(e.name, e.value, self._mesh_origin(e))
        local_names = {v.name: v for v in desc.local_env}
        for e in self.entries:
            if e.target != ms.name:
                continue
            if e.name in local_names:
                o = self._svc_origin(desc, "local", e.name)
                self._problem(
                    f"`{e.name}` is a local variable of service `{ms.name}` (fixed by its "
                    f"author at {o}); a mesh cannot override it", e.path,
                    value=e.name, allowed="the service's global inputs: "
                    + (", ".join(g.name for g in desc.global_env) or "none"))
            elif e.value is not None:
                env[e.name] = EnvValue(e.name, e.value, self._mesh_origin(e))
        for v in desc.local_env:
            env[v.name] = EnvValue(v.name, v.value, self._svc_origin(desc, "local", v.name))
        missing = [g.name for g in desc.global_env if g.name not in env]
        if missing:
            self._problem(
                f"service `{ms.name}` ({ms.image}) needs a value for "
                + ", ".join(missing), ("services", index),
                allowed="add them to env under `service: global` or `service: "
                + ms.name + "` (veil apply --print-defaults lists every variable)")
            return None
        return self._render(index, desc, env)

    def _render(self, index: int, desc: ServiceDescription,
                env: dict[str, EnvValue]) -> ResolvedService | None:
        ms = self.mesh.services[index]
        context: dict[str, Any] = {**self.facts, "service_name": ms.name,
                                   "image_name": ms.image, "session": ms.name}
        context.update({n: v.value for n, v in env.items()})
        rendered = _render_all(env, context)
        ok = True
        for name, err in rendered.errors.items():
            ok = False
            self._report_value(ms.name, env[name], f"`{name}`: {err}")
        known = _secret_names(desc)
        # only the program's own variables reach CAS: a mesh-global value that refers to a
        # secret is checked for the services that declare that variable, not for every service
        declared = {v.name for v in desc.local_env} | {g.name for g in desc.global_env}
        refs: set[str] = set()
        for name, val in rendered.values.items():
            names = tuple(r.name for r in find_secret_refs(val.value))
            rendered.values[name] = EnvValue(name, val.value, val.origin, names)
            for r in names:
                if r not in known and name in declared:
                    ok = False
                    self._report_value(ms.name, val, f"`{name}` refers to secret `{r}`, which "
                                       f"service `{ms.name}` neither defines nor imports",
                                       allowed=", ".join(sorted(known)) or "none")
        context.update({n: v.value for n, v in rendered.values.items()})
        files: list[ResolvedFile] = []
        for f in desc.injection_files:
            try:
                content = render(f.content, context)
            except TemplateError as err:
                ok = False
                self._problem(f"service `{ms.name}`: injection file {f.path}: {err}",
                              ("services", index, "image"), value=ms.image)
                continue
            names = tuple(sorted({r.name for r in find_secret_refs(content)}))
            files.append(ResolvedFile(f.path, content, f.permission, names))
        if not ok:
            return None
        program_names = [v.name for v in desc.local_env] + [g.name for g in desc.global_env]
        program_env = {n: rendered.values[n] for n in sorted(program_names)}
        for v in program_env.values():
            refs.update(v.secret_refs)
        for rf in files:
            refs.update(rf.secret_refs)
        return ResolvedService(
            name=ms.name, image=ms.image, description=desc,
            env=dict(sorted(rendered.values.items())), program_env=program_env,
            context=context, injection_files=files, secret_refs=tuple(sorted(refs)),
            session=ms.name)

    def _report_value(self, service: str, val: EnvValue, message: str,
                      allowed: str | None = None) -> None:
        if val.origin.file == self.doc.file and val.origin.path is not None:
            self.problems.append(self.doc.positions.problem(
                f"service `{service}`: {message}", val.origin.path, value=val.value,
                allowed=allowed))
        else:
            self.problems.append(Problem(f"service `{service}`: {message} (from {val.origin})",
                                         file=val.origin.file or self.doc.file,
                                         line=val.origin.line, allowed=allowed))


def _secret_names(desc: ServiceDescription) -> set[str]:
    names = {s.name for s in desc.secrets}
    for imp in desc.imports:
        names.add(imp)
        names.add(imp.rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    return names


@dataclass
class _Rendered:
    values: dict[str, EnvValue]
    errors: dict[str, str]


def _render_all(env: dict[str, EnvValue], context: dict[str, Any]) -> _Rendered:
    """Render every value; a value may use other variables, rendered first (cycles are errors)."""
    done: dict[str, EnvValue] = {}
    errors: dict[str, str] = {}
    ctx = dict(context)

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name in errors:
            return
        val = env[name]
        if not has_template(val.value):
            done[name] = val
            return
        for dep in sorted(variables_of(val.value)):
            if dep in stack or dep == name:
                errors[name] = "template cycle " + " -> ".join((*stack, name, dep))
                return
            if dep in env:
                visit(dep, (*stack, name))
                if dep in done:
                    ctx[dep] = done[dep].value
        try:
            done[name] = EnvValue(name, render(val.value, ctx), val.origin)
            ctx[name] = done[name].value
        except TemplateError as err:
            errors[name] = str(err)

    for n in env:
        visit(n, ())
    return _Rendered(done, errors)


def resolve_mesh(doc: Loaded, descriptions: dict[str, ServiceDescription], *,
                 service_origins: dict[str, dict[str, Origin]] | None = None) -> ResolvedMesh:
    """Resolve every service of a loaded mesh; all problems are raised together.

    `descriptions` maps each image reference of the mesh to its service description;
    `service_origins` (image → "local:NAME"/"global:NAME" → Origin) adds file:line of the
    service manifest's own values where it is known.
    """
    mesh: Mesh = doc.model
    r = _Resolver(doc, descriptions, service_origins or {})
    missing = sorted({s.image for s in mesh.services if s.image not in descriptions})
    for i, s in enumerate(mesh.services):
        if s.image in missing:
            r._problem(f"no service description for image {s.image}",
                       ("services", i, "image"), value=s.image,
                       allowed="an image built or recorded by "
                       "`veil apply -f <service.yaml> --dry-run`")
    services: dict[str, ResolvedService] = {}
    for i, s in enumerate(mesh.services):
        if s.image in missing:
            continue
        rs = r.service(i)
        if rs is not None:
            services[s.name] = rs
    if r.problems:
        n = len([p for p in r.problems if p.severity == "error"])
        raise ManifestError(r.problems,
                            summary=f"{n} error{'s' if n != 1 else ''} resolving {doc.file}")
    return ResolvedMesh(namespace=mesh.policy.namespace, services=services,
                        helm_env=r.helm_env(), facts=r.facts)


def origins_of_service(doc: Loaded) -> dict[str, Origin]:
    """file:line of each `local`/`global` variable of a loaded genservice, for `service_origins`."""
    out: dict[str, Origin] = {}
    tree = doc.tree
    env = tree.get("environment") if isinstance(tree, dict) else None
    for section, level in (("local", "service local"), ("global", "service default")):
        items = env.get(section) if isinstance(env, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                line, _ = doc.positions.at(("environment", section, i))
                out[f"{section}:{item['name']}"] = Origin(level, doc.file, line)
    return out
