"""A service that carries its own chart templates (`apply -f service.yaml --helm-template DIR`):
mesh apply renders that service's subchart from them, checked by Helm's engine and
kubernetes-validate; placeholders that are no fact, and paths that leave the folder, are refused."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.mesh.support import case, digest
from veil.errors import UserError
from veil.image.helmtemplate import read_helm_template
from veil.mesh import MemoryStore, MeshOptions, apply_mesh
from veil.mesh.descriptions import InMemory
from veil.mesh.store import SessionStore

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CAS_KEY = base64.b64encode(b"\x30" + bytes(range(90))).decode()
IMAGE = "registry.scontain.com/cicd/memcached:latest"

# sconectl's templates-genservice layout: the chart under charts/, Tera placeholders filled at
# apply time beside Helm's own {{ .Values... }}
FOLDER = {
    "charts/Chart.yaml": 'apiVersion: v2\nname: "{{ service_name }}"\n'
                         "description: memcached, our own chart\nversion: 9.9.9\n",
    "charts/values.yaml": "cacheSize: 64\nimage:\n  repository: wrong.example/mine\n",
    "charts/templates/_helpers.tpl":
        '{{- define "mc.fullname" -}}\n'
        "{{- .Values.fullnameOverride | default (printf \"%s-%s\" .Release.Name "
        '.Chart.Name) | trunc 63 | trimSuffix "-" }}\n{{- end }}\n',
    "charts/templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mc.fullname" . }}
  labels:
    app.kubernetes.io/name: {{ service_name }}
    veil.dev/session: {{ session | default(value="none") }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ service_name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ service_name }}
    spec:
      containers:
        - name: memcached
          image: "{{ .Values.image.repository }}@{{ .Values.image.digest }}"
          args: ["-m", "{{ .Values.cacheSize }}"]
          env:
            - name: SCONE_CONFIG_ID
              value: {{ .Values.scone.config_id | quote }}
            - name: SCONE_CAS_ADDR
              value: "{{ cas_addr }}"
            - name: MESH
              value: "{{ namespace }}"
            - name: TIER
              value: "{{ tier | default(value="cache") }}"
{{- if .Values.resources }}
          resources: {{- toYaml .Values.resources | nindent 12 }}
{{- end }}
""",
}


def connect(_addr: str, _key: str | None, _trust_any: bool) -> tuple[SessionStore, None]:
    return MemoryStore(key=CAS_KEY, key_fingerprint="SHA256:test"), None


def apply(target: Path, folder: dict[str, str], **kw: Any) -> Any:
    doc, lookup = case("seed")
    by_image = dict(lookup.by_image)
    by_image[IMAGE] = by_image[IMAGE].model_copy(update={"helm_template": folder})
    return apply_mesh(doc, MeshOptions(target=target, dry_run=True, **kw),
                      descriptions=InMemory(by_image, lookup.digests), connect=connect)


def objects(chart: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(chart)) as c:
        rendered = c.render(values or {}, name="rel", namespace="prod", is_install=True)
    return [d for p, t in rendered.items() if not p.endswith("NOTES.txt")
            for d in YAML(typ="safe").load_all(t) if d]


def test_the_subchart_is_rendered_from_the_service_templates(tmp_path: Path) -> None:
    folder = tmp_path / "templates-genservice"
    for p, t in FOLDER.items():
        (folder / p).parent.mkdir(parents=True, exist_ok=True)
        (folder / p).write_text(t)
    result = apply(tmp_path / "t", read_helm_template(folder, tmp_path))
    chart = result.chart_dir
    lint = helm_python.lint(str(chart), strict=True, with_subcharts=True)
    assert lint["errors"] == [] and all(m["severity"] <= 1 for m in lint["messages"]), lint
    sub = chart / "charts" / "memcached"
    assert sorted(p.relative_to(sub).as_posix() for p in sub.rglob("*") if p.is_file()) == [
        ".helmignore", "Chart.yaml", "templates/_helpers.tpl", "templates/deployment.yaml",
        "values.schema.json", "values.yaml"]  # none of the generated templates
    meta = YAML(typ="safe").load((sub / "Chart.yaml").read_text())
    assert meta["name"] == "memcached" and meta["version"] == "0.1.0"
    assert meta["description"] == "memcached, our own chart"
    values = YAML(typ="safe").load((sub / "values.yaml").read_text())
    assert values["cacheSize"] == 64  # the service's own value kept
    pinned = result.images["memcached"]  # by digest (the copy in repo.destination)
    assert values["image"]["repository"] == pinned.split("@")[0]  # Veil's won over the service's
    objs = objects(chart)
    for o in objs:
        kubernetes_validate.validate(o, "1.30.0", strict=True)
    mc = [o for o in objs if o["kind"] == "Deployment"
          and o["metadata"]["labels"]["app.kubernetes.io/name"] == "memcached"]
    assert len(mc) == 1
    assert mc[0]["metadata"]["labels"]["veil.dev/session"] == "memcached"
    c = mc[0]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == pinned and pinned.endswith("@" + digest(IMAGE))
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SCONE_CONFIG_ID"] == result.config_id("memcached")
    assert env["SCONE_CAS_ADDR"] == result.cas_addr and env["TIER"] == "cache"
    assert env["MESH"] == result.namespace
    assert c["args"] == ["-m", "64"]
    # the other services keep their generated subcharts
    assert sum(o["kind"] == "Deployment" for o in objs) == 3
    # values sconectl users set still reach the service's own templates
    named = objects(chart, {"memcached": {"fullnameOverride": "mc", "replicaCount": 2}})
    mine = next(o for o in named if o["metadata"]["name"] == "mc")
    assert mine["spec"]["replicas"] == 2
    with pytest.raises(helm_python.HelmError):  # the schema still guards the digest
        objects(chart, {"memcached": {"image": {"digest": "latest"}}})
    text = "\n".join(p.read_text() for p in chart.rglob("*") if p.is_file())
    assert "$$SCONE::" not in text and "{{ service_name }}" not in text


def test_an_undefined_placeholder_names_service_file_and_placeholder(tmp_path: Path) -> None:
    folder = dict(FOLDER)
    folder["charts/templates/svc.yaml"] = "kind: Service\nmetadata:\n  name: {{ db_password }}\n"
    with pytest.raises(UserError) as err:
        apply(tmp_path / "t", folder)
    msg = str(err.value)
    assert "memcached" in msg and "templates/svc.yaml:3" in msg and "db_password" in msg
    assert not (tmp_path / "t").exists()  # refused before anything was written


@pytest.mark.parametrize("bad", ["../evil.yaml", "charts/../../x.yaml", "/etc/passwd",
                                 "templates/./x.yaml", "templates\\..\\x.yaml", "templates//x"])
def test_a_path_that_leaves_the_folder_is_refused(tmp_path: Path, bad: str) -> None:
    folder = dict(FOLDER)
    folder[bad] = "kind: Secret\n"
    with pytest.raises(UserError) as err:
        apply(tmp_path / "t", folder)
    assert "memcached" in str(err.value) and repr(bad) in str(err.value)
    assert not (tmp_path / "t").exists() and not (tmp_path / "evil.yaml").exists()


TERA_BLOCKS = """\
{#- sconectl's Tera, filled at apply time; {{ .Values.never }} is in a comment -#}
{% set tier = "cache" %}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ service_name }}-tera
  labels:
    app.kubernetes.io/name: {{ service_name }}
data:
{%- if replicas > 5 %}
  replicas: many
{%- elif replicas == 1 %}
  replicas: one
{%- else %}
  replicas: some
{%- endif %}
  tier: {{ tier }}
  mesh: {{ namespace | replace(from="-", to="_") | upper }}
{%- for p in ["a", "b"] %}
  entry-{{ loop.index }}: "{{ p | upper }}-{{ .Values.cacheSize }}"
{%- endfor %}
  helm: {% raw %}{{ .Values.cacheSize | quote }}{% endraw %}
  release: {{ .Release.Name | quote }}
{{- if .Values.resources }}
  resources: "yes"
{{- end }}
{%- if tier is starting_with("ca") and session is defined %}
  session: {{ session }}
{%- endif %}
"""


def test_tera_blocks_are_filled_and_helm_renders_the_rest(tmp_path: Path) -> None:
    folder = dict(FOLDER)
    folder["charts/templates/configmap.yaml"] = TERA_BLOCKS
    result = apply(tmp_path / "t", folder)
    chart = result.chart_dir
    sub = chart / "charts" / "memcached" / "templates"
    filled = (sub / "configmap.yaml").read_text()
    assert "{%" not in filled and "{#" not in filled and "never" not in filled
    # Helm's actions, inside and outside Tera's blocks, exactly as written
    assert filled.count('-{{ .Values.cacheSize }}"') == 2
    assert "helm: {{ .Values.cacheSize | quote }}" in filled
    assert "{{- if .Values.resources }}" in filled and "{{- end }}" in filled
    # a file without Tera comes out byte for byte
    assert (sub / "_helpers.tpl").read_text() == FOLDER["charts/templates/_helpers.tpl"]
    lint = helm_python.lint(str(chart), strict=True, with_subcharts=True)
    assert lint["errors"] == [] and all(m["severity"] <= 1 for m in lint["messages"]), lint
    objs = objects(chart, {"memcached": {"resources": {"limits": {"cpu": "1"}}}})
    for o in objs:
        kubernetes_validate.validate(o, "1.30.0", strict=True)
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert cm["metadata"]["name"] == "memcached-tera"
    assert cm["data"] == {
        "replicas": "one", "tier": "cache", "mesh": result.namespace.replace("-", "_").upper(),
        "entry-1": "A-64", "entry-2": "B-64", "helm": "64", "release": "rel",
        "resources": "yes", "session": "memcached"}
    assert "resources" not in next(o for o in objects(chart) if o["kind"] == "ConfigMap")["data"]


@pytest.mark.parametrize(("text", "line", "named"), [
    ("kind: X\n{% macro m() %}x{% endmacro %}\n", 2, "`{% macro %}` is not supported"),
    ("a: 1\nb: 2\n{% include \"other.yaml\" %}\n", 3, "`{% include %}` is not supported"),
    ("{% set_global x = 1 %}\n", 1, "`{% set_global %}` is not supported"),
    ("a: 1\n{% for x in [1] %}{% break %}{% endfor %}\n", 2, "`{% break %}` is not supported"),
    ("a: 1\n\n{% if nothing_here %}x{% endif %}\n", 3, "placeholder `nothing_here`"),
    ("a: 1\n{% if replicas %}\nb: 2\n", 2, "never closed by `{% endif %}`"),
    ("{% for x in [1] %}\n{% endif %}\n", 2, "`{% endif %}` closes no `{% if %}`"),
    ("a: 1\n{% raw %}{{ x }}\n", 2, "without its `{% endraw %}`"),
    ("a: {{ port | no_such_filter }}\n", 1, "no_such_filter"),
])
def test_unsupported_tera_is_refused_with_file_line_and_construct(
        tmp_path: Path, text: str, line: int, named: str) -> None:
    folder = dict(FOLDER)
    folder["charts/templates/x.yaml"] = text
    with pytest.raises(UserError) as err:
        apply(tmp_path / "t", folder)
    msg = err.value.message
    assert "memcached" in msg and f"templates/x.yaml:{line}:" in msg and named in msg, msg
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_no_templates_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no templates/ folder"):
        apply(tmp_path / "t", {"Chart.yaml": "name: x\n"})
