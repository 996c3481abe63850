"""Mangled manifests never escape as an unhandled exception: only Veil's own errors."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from veil.errors import ManifestError, VeilError
from veil.manifest.description import ServiceDescription
from veil.manifest.load import load_document, plain
from veil.manifest.problems import INTERNAL_PREFIXES
from veil.resolve.defaults import print_defaults
from veil.resolve.env import resolve_mesh

ROOT = Path(__file__).resolve().parents[2]
SERVICE = (ROOT / "examples" / "hello-user" / "service.yaml").read_text()
MESH = (ROOT / "examples" / "seeds" / "mesh.yaml").read_text()
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6),
                    st.text(max_size=12), st.sampled_from(
                        ["$$SCONE::password$$", "$$SCONE::x:weird$$", "{{ a", "{{b}}", "$VAR",
                         "scone/5.8", "mesh", "genservice", "global", "helm",
                         "{{ x | default(value=\"y\") }}"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["name", "value", "env", "service", "image", "kind",
                                     "build", "to", "command", "secrets", "global", "local",
                                     "cas", "cas_url", "alias", "policy", "namespace"]),
                    inner, max_size=4)), max_leaves=12)


def _exercise(text: str) -> None:
    try:
        doc = load_document("fuzz.yaml", text)
    except ManifestError as err:
        # every message is in the user's words, none with pydantic's "Value error, " in front
        assert not [p.message for p in err.problems if p.message.startswith(INTERNAL_PREFIXES)]
        return
    except VeilError:
        return
    if doc.kind == "mesh":
        desc = ServiceDescription.from_genservice(
            load_document("s.yaml", SERVICE).model)
        descs = {s.image: desc for s in doc.model.services}
        for call in (lambda: resolve_mesh(doc, descs),
                     lambda: print_defaults(text, "fuzz.yaml", descs)):
            with contextlib.suppress(VeilError):
                call()


@SETTINGS
@given(st.sampled_from([SERVICE, MESH]), st.data())
def test_text_mutations(base: str, data: st.DataObject) -> None:
    text = base
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 20)))
        ins = data.draw(st.sampled_from(["", ":", "- ", "\n", "  ", "[", "{", "\"", "'", "null",
                                         "$$SCONE::", "{{", "&a", "*a", "!!int ", "\t", "#"]))
        text = text[:i] + ins + text[j:]
    _exercise(text)


def _dump(doc: Any) -> str:
    buf = io.StringIO()
    YAML(typ="safe").dump(doc, buf)
    return buf.getvalue()


@SETTINGS
@given(st.sampled_from([SERVICE, MESH]), st.data())
def test_structural_mutations(base: str, data: st.DataObject) -> None:
    doc: Any = plain(YAML(typ="rt").load(base))
    paths: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for k in list(node):
                paths.append((node, k))
                collect(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                collect(node[i])

    collect(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        parent, key = data.draw(st.sampled_from(paths))
        parent[key] = data.draw(trees)
    try:
        text = _dump(doc)
    except Exception:  # the mutated tree itself may not be dumpable; not what is tested
        return
    _exercise(text)
