"""A service's subchart from the chart templates it carries (sconectl's `--helm-template DIR`).

The folder is a Helm chart (`Chart.yaml`, `values.yaml`, `templates/*.yaml`, ...), optionally
under a `charts/` folder as in sconectl's `templates-genservice` layout. Its files may hold
Tera: placeholders `{{ name }}` and `{{ name | default(value="x") }}` and the blocks sconectl
templates use (`{% if %}`, `{% for %}`, `{% set %}`, `{% raw %}`, `{# comments #}`), filled here
at apply time from the mesh's facts about the service (`FACTS`; see `veil.deploy.chart.tera`); a
name that is no fact, or a tag Tera and Jinja do not share, is an error naming the service, the
file and line, and the placeholder or tag. Everything else in `{{ }}` (`{{ .Values.x }}`,
`{{ include "x" . }}`, `{{- end }}`) is Helm's and left to Helm as written.

The facts are public: the image by digest, where CAS is, the config id. Nothing from the
service's environment or session (CAS provisions those to the attested program) can reach a
template. The subchart's values.yaml is the service's own merged under Veil's (image, scone
block, ...: Veil's win), and Veil's values.schema.json guards it; `Chart.yaml` keeps its fields
but gets the subchart's name and the umbrella's version (the umbrella depends on both).
"""

from __future__ import annotations

import copy
import functools
import io
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from veil.deploy.chart import tera
from veil.deploy.chart.model import ChartSpec, Subchart
from veil.errors import UserError

__all__ = ["FACTS", "custom_subchart", "facts", "template_paths"]

FACTS = ("service_name", "name", "namespace", "release", "image", "image_name",
         "image_repository", "image_digest", "image_tag", "port", "replicas", "cas_addr",
         "cas_key", "config_id", "session", "version")

_SEGMENT = re.compile(r"[A-Za-z0-9_.@+-][A-Za-z0-9_.@+ -]*")


def template_paths(service: str, templates: Mapping[str, str]) -> dict[str, str]:
    """The files relative to the subchart (a leading `charts/` folder dropped); a path that
    could leave the subchart's folder is refused."""
    for path in templates:
        parts = path.split("/")
        bad = (not path or path.startswith("/") or "\\" in path or "\0" in path
               or any(p in ("", ".", "..") or not _SEGMENT.fullmatch(p) for p in parts))
        if bad:
            raise UserError(f"service `{service}`: its helm template file {path!r} is not a "
                            "plain relative path inside the template folder",
                            hint="names of letters, digits and ._-+@, no `..`, no `/` first")
    if templates and all(p.startswith("charts/") for p in templates):
        templates = {p.removeprefix("charts/"): t for p, t in templates.items()}
    nested = sorted(p for p in templates if p.startswith("charts/"))
    if nested:
        raise UserError(f"service `{service}`: its helm template holds charts of its own "
                        f"({nested[0]}); the mesh's umbrella chart holds the services",
                        hint="one chart per service: Chart.yaml, values.yaml, templates/")
    if not any(p.startswith("templates/") for p in templates):
        raise UserError(f"service `{service}`: its helm template has no templates/ folder "
                        f"(files: {', '.join(sorted(templates))})",
                        hint="a Helm chart: Chart.yaml, values.yaml, templates/*.yaml")
    return dict(templates)


def facts(s: Subchart, spec: ChartSpec) -> dict[str, Any]:
    image = f"{s.repository}@{s.digest}" if s.digest else f"{s.repository}:{s.tag or 'latest'}"
    return {"service_name": s.service, "name": s.service, "namespace": spec.namespace,
            "release": spec.release, "image": image, "image_name": image,
            "image_repository": s.repository, "image_digest": s.digest or "",
            "image_tag": s.tag or "", "port": s.port, "replicas": s.replicas,
            "cas_addr": s.cas_addr, "cas_key": s.cas_key or "", "config_id": s.config_id,
            "session": s.config_id.split("/")[1], "version": spec.version}


def _fill(service: str, path: str, text: str, context: Mapping[str, Any]) -> str:
    try:
        return tera.fill(text, context)
    except tera.TeraError as err:
        where = f"{path}:{err.line}" if err.line else path
        if err.name is not None and err.name not in context and "not defined" in err.message:
            raise UserError(f"service `{service}`: helm template {where}: placeholder "
                            f"`{err.name}` is not defined", hint="defined: " + ", ".join(FACTS)
                            ) from None
        raise UserError(f"service `{service}`: helm template {where}: {err.message}",
                        hint="Tera blocks " + ", ".join(f"{{% {t} %}}" for t in tera.BLOCK_TAGS)
                        + ", {# comments #}, {{ name | default(value=\"x\") }}; Helm's own "
                        "{{ .Values... }} stay as written") from None


def _map(service: str, path: str, text: str) -> dict[str, Any]:
    try:
        data = _parsed(text)
    except YAMLError as err:
        raise UserError(f"service `{service}`: helm template {path} is not valid YAML: "
                        f"{getattr(err, 'problem', None) or err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"service `{service}`: helm template {path} must be a YAML map")
    return copy.deepcopy(data)  # the callers' to change; the cached parse stays as read


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Any:
    """One parse per distinct text: the services of a mesh that share a chart template share
    its values.yaml, and the check before upload and the chart itself fill the same texts (a
    thousand services parsed them four thousand times)."""
    return YAML(typ="safe").load(io.StringIO(text))


def custom_subchart(s: Subchart, spec: ChartSpec, templates: Mapping[str, str]
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(Chart.yaml fields, the service's own values, every other file), placeholders filled."""
    context = facts(s, spec)
    files = {p: _fill(s.service, p, t, context)
             for p, t in template_paths(s.service, templates).items()}
    chart = _map(s.service, "Chart.yaml", files.pop("Chart.yaml", ""))
    values = _map(s.service, "values.yaml", files.pop("values.yaml", ""))
    files.pop("values.schema.json", None)  # Veil's guards the values (digest, port, scone)
    return chart, values, files
