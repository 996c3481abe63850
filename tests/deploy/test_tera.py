"""Tera in a service's own chart templates: filled at apply time, Helm's actions untouched."""

from __future__ import annotations

import pytest

from veil.deploy.chart.custom import FACTS
from veil.deploy.chart.templates import HOST_PATH_TEMPLATES, TEMPLATES
from veil.deploy.chart.tera import TeraError, fill

FACTS_OF = {f: f"<{f}>" for f in FACTS} | {"port": 8080, "replicas": 2}


@pytest.mark.parametrize("templates", [TEMPLATES, HOST_PATH_TEMPLATES])
def test_helm_templates_come_out_byte_for_byte(templates: dict[str, str]) -> None:
    for path, text in templates.items():
        text = text.replace("@N@", "svc")
        assert fill(text, FACTS_OF) == text, path


@pytest.mark.parametrize(("template", "out"), [
    ("{{ service_name }}", "<service_name>"),
    ('{{ tier | default(value="x") }}', "x"),
    ("{% if port > 8000 %}hi{% elif port %}lo{% else %}no{% endif %}", "hi"),
    ("{% for x in [1, 2] %}{{ loop.index }}{{ x }};{% endfor %}", "11;22;"),
    ("{% for x in range(end=3) %}{{ x }}{% endfor %}", "012"),
    ('{% for k, v in {"a": 1} %}{{ k }}={{ v }}{% endfor %}', "a=1"),
    ('{% set s = "a-b" %}{{ s | replace(from="-", to="_") | upper }}', "A_B"),
    ('{{ ["a", "b"] | join(sep=",") }}', "a,b"),
    ('{% set a = "a:b" %}{{ a | split(pat=":") | last }}', "b"),
    ('{{ "text" }} {{ 1 }}', '{{ "text" }} {{ 1 }}'),  # Go's literals: Helm's
    ("{# gone #}x{#- also {{ .Values.x }} -#}\n y", "xy"),
    ("{% raw %}{{ service_name }}{% endraw %}", "{{ service_name }}"),
    ('{% if "abc" is starting_with("ab") and port is defined %}y{% endif %}', "y"),
    ("{%- if true -%}\n  {{ .Values.x }}\n{%- endif %}", "{{ .Values.x }}"),
    ("{% for i in [1, 2] %}{{- include \"x\" . }}{% endfor %}",
     '{{- include "x" . }}{{- include "x" . }}'),
    ("{{ else }} {{- end }} {{ $x := 1 }} {{/* c */}}", "{{ else }} {{- end }} {{ $x := 1 }} "
     "{{/* c */}}"),
])
def test_tera_forms(template: str, out: str) -> None:
    assert fill(template, FACTS_OF) == out


@pytest.mark.parametrize(("template", "line"), [
    ("a\n{{ port.__class__ }}\n", 2),  # the sandbox: no way from a fact to Python's innards
    ("a\n{{ range.__globals__ }}\n", 2),
    ("a\n\n{% if x %}{% endif %}\n", 3),
    ("{% import \"m\" as m %}\n", 1),
    ("x\n{% endfor %}\n", 2),
])
def test_refused_with_its_line(template: str, line: int) -> None:
    with pytest.raises(TeraError) as err:
        fill(template, FACTS_OF)
    assert err.value.line == line, err.value.message
