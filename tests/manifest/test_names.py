"""Names that end up in CAS session names and Helm releases: checked where they are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ManifestError
from veil.manifest.load import load_document

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: [security]
    cas_url: cas.example:8081
policy:
  namespace: "{namespace}"
services:
  - name: "{service}"
    image: reg.example/a:1
"""


def _problems(tmp_path: Path, namespace: str = "ns", service: str = "svc") -> list[str]:
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(namespace=namespace, service=service))
    try:
        load_document(f)
    except ManifestError as err:
        return [f"{p.path}:{p.line}" for p in err.problems]
    return []


@pytest.mark.parametrize("bad", ["a/b", "../x", "has space", ".hidden", "-x"])
def test_namespace_and_service_names_cas_would_refuse(tmp_path: Path, bad: str) -> None:
    assert _problems(tmp_path, namespace=bad) == ["policy.namespace:8"]
    assert _problems(tmp_path, service=bad) == ["services[0].name:10"]


@pytest.mark.parametrize("good", ["myUniqueNamespace", "maria_db", "nginx_scone", "v1.2-x"])
def test_the_seeds_names_are_fine(tmp_path: Path, good: str) -> None:
    assert _problems(tmp_path, namespace=good, service=good) == []


def test_a_shell_variable_is_reported_once(tmp_path: Path) -> None:
    assert _problems(tmp_path, namespace="$APP_NAMESPACE") == ["policy.namespace:8"]
