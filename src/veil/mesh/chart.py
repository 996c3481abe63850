"""The Helm chart of an applied mesh: `target/helm/` (and, with `--output yaml`, the objects
Helm renders from it in `target/manifests/`).

The chart's data comes from the mesh: each service's image pinned by digest (the copy in
`repo.destination` when the mesh names one), `imagePullSecrets` and `APP_SERVICE_PORT` from the
mesh's environment, the security CAS's address and key, each service's config id; the mesh's
`helm_extra_values` (a YAML string or a map keyed by subchart) merge over it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from veil.deploy.chart.files import chart_files
from veil.deploy.chart.model import ChartSpec, Subchart
from veil.errors import ManifestError, OperationalError, UserError
from veil.image.reference import parse_reference
from veil.manifest.load import Loaded, plain
from veil.manifest.models import Mesh
from veil.mesh.files import put_tree

if TYPE_CHECKING:
    from veil.mesh.apply import MeshOptions, MeshResult, Progress

__all__ = ["chart_spec", "check_chart_inputs", "extra_values", "render_manifests", "write_chart"]

DEFAULT_PORT = 8080


def extra_values(doc: Loaded, services: list[str]) -> dict[str, Any]:
    """`helm_extra_values` as a map; its keys must name subcharts (services) or `global`."""
    mesh: Mesh = doc.model
    raw = mesh.helm_extra_values
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            data = plain(YAML(typ="rt").load(io.StringIO(raw)))
        except YAMLError as err:
            raise ManifestError([doc.positions.problem(
                f"helm_extra_values is not valid YAML: {getattr(err, 'problem', err)}",
                ("helm_extra_values",), allowed="YAML values keyed by service")]) from None
    else:
        data = raw
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ManifestError([doc.positions.problem(
            "helm_extra_values must be a map keyed by subchart (service name)",
            ("helm_extra_values",), allowed="e.g. `memcached: {replicaCount: 2}`")])
    unknown = sorted(str(k) for k in data if k not in services and k != "global")
    if unknown:
        raise ManifestError([doc.positions.problem(
            f"helm_extra_values names {', '.join(unknown)}, which is no service of the mesh",
            ("helm_extra_values",), value=unknown[0],
            allowed=", ".join(["global", *services]))])
    return dict(data)


def _port(result: MeshResult, service: str) -> int:
    env = result.resolved.services[service].env
    for name in ("APP_SERVICE_PORT", "HTTP_PORT", "PORT"):
        v = env.get(name)
        if v is None:
            continue
        try:
            port = int(v.value)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise UserError(f"service `{service}`: {name} = {v.value!r} ({v.origin}) is not "
                            "a port", hint="a number from 1 to 65535")
        return port
    return DEFAULT_PORT


def _pull_secrets(result: MeshResult, service: str) -> tuple[str, ...]:
    v = result.resolved.services[service].env.get("imagePullSecrets")
    if v is None:
        return ()
    return tuple(n.strip() for n in v.value.split(",") if n.strip())


def chart_spec(doc: Loaded, result: MeshResult, options: MeshOptions) -> ChartSpec:
    mesh: Mesh = doc.model
    subs: list[Subchart] = []
    for s in mesh.services:
        if s.name not in result.resolved.services:
            continue
        ref = parse_reference(result.images[s.name])
        subs.append(Subchart(
            service=s.name, repository=ref.name, digest=ref.digest,
            tag=None if ref.digest else ref.tag, port=_port(result, s.name),
            cas_addr=result.cas_addr, cas_key=result.cas_key,
            config_id=result.config_id(s.name),
            image_pull_secrets=_pull_secrets(result, s.name),
            templates=tuple(sorted(
                (result.resolved.services[s.name].description.helm_template or {}).items())),
            host_paths=tuple(result.resolved.services[s.name].description.host_paths)))
    version = "0.1.0" if options.release_version is None else f"0.1.{options.release_version}"
    return ChartSpec(name=result.release, release=result.release, namespace=result.namespace,
                     version=version, app_version=options.app_version, subcharts=tuple(subs),
                     extra_values=extra_values(doc, [s.service for s in subs]))


def render_manifests(chart_dir: Any, release: str, namespace: str) -> dict[str, str]:
    """The Kubernetes objects Helm's engine renders from the chart (path → YAML)."""
    try:
        import helm_python
    except ImportError:
        raise OperationalError("--output yaml renders the chart with Helm's engine, which is "
                               "not installed", hint="python3 -m pip install helm-python-sdk"
                               ) from None
    try:
        with helm_python.Chart.load(str(chart_dir)) as chart:
            rendered = chart.render({}, name=release, namespace=namespace, is_install=True)
    except helm_python.HelmError as err:
        raise OperationalError(f"Helm could not render {chart_dir}: {err}") from None
    out: dict[str, str] = {}
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or "/tests/" in path or not text.strip():
            continue
        parts = path.split("/")
        # <umbrella>/charts/<service>/templates/x.yaml -> <service>/x.yaml
        name = f"{parts[2]}/{parts[-1]}" if len(parts) > 3 and parts[1] == "charts" else \
            parts[-1]
        out[name] = text
    return out


def check_chart_inputs(doc: Loaded, result: MeshResult) -> None:
    """What the chart takes from the mesh, checked before anything is uploaded (a service's
    own templates are filled once here, so a wrong placeholder stops the apply early)."""
    extra_values(doc, list(result.resolved.services))
    for name in result.resolved.services:
        _port(result, name)
    from veil.deploy.chart.custom import custom_subchart
    from veil.mesh.apply import MeshOptions

    spec = chart_spec(doc, result, MeshOptions())
    for sub in spec.subcharts:
        if sub.templates:
            custom_subchart(sub, spec, dict(sub.templates))


def write_chart(doc: Loaded, result: MeshResult, options: MeshOptions, say: Progress) -> None:
    spec = chart_spec(doc, result, options)
    files = chart_files(spec)
    where = options.target / "helm"
    put_tree(where, files)
    result.chart_dir = where
    say("chart", f"wrote the Helm chart to {where}")
    if options.output == "yaml":
        from veil.deploy.chart.names import release_name

        manifests = render_manifests(where, result.release, release_name(result.namespace))
        out = options.target / "manifests"
        put_tree(out, manifests)
        result.manifests_dir = out
