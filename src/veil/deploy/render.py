"""Charts rendered with Helm's engine (helm-python-sdk), as a pre-deploy check and in tests.

Argo CD renders the chart in the cluster; rendering it here first with the same values turns
"the Application is OutOfSync with a template error" into an error before anything is written,
and shows which images the pods would pull.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from veil.errors import OperationalError, UserError

__all__ = ["ALIAS_CHART", "WRAPPER_CHART", "bundled_chart", "pulled_images", "render_chart"]

WRAPPER_CHART = "wrapper"
ALIAS_CHART = "alias"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LOCK = threading.Lock()  # the Go library's handles are not meant for concurrent use


def bundled_chart(name: str) -> Path:
    """The folder of a chart that ships with Veil (`wrapper`, `alias`)."""
    return Path(str(resources.files("veil.deploy").joinpath("helm", name)))


def render_chart(chart: Path, values: Mapping[str, Any], *, release: str,
                 namespace: str) -> list[dict[str, Any]]:
    """The Kubernetes objects the chart renders to with these values (NOTES and tests dropped).
    A chart that does not load or render is a user error quoting Helm's message."""
    try:
        import helm_python
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise OperationalError("rendering charts needs helm-python-sdk",
                               hint="pip install helm-python-sdk") from err
    if not (chart / "Chart.yaml").is_file():
        raise UserError(f"chart {chart}: no Chart.yaml there",
                        hint="chart.path names a Helm chart folder")
    try:
        with _LOCK, helm_python.Chart.load(str(chart)) as loaded:
            files = loaded.render(dict(values), name=release, namespace=namespace,
                                  is_install=True)
    except helm_python.HelmError as err:
        raise UserError(f"chart {chart} does not render with the deployment's values: "
                        f"{_short(err)}", hint="fix the chart or the values") from None
    objects: list[dict[str, Any]] = []
    for path in sorted(files):
        if path.endswith("NOTES.txt") or "/tests/" in path:
            continue
        try:
            docs = list(yaml.load_all(files[path], Loader=_Loader))
        except yaml.YAMLError as err:
            raise UserError(f"chart {chart}: {path} renders to invalid YAML: {err}") from None
        objects.extend(d for d in docs if isinstance(d, dict))
    return objects


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:600]


def _containers(obj: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    if obj.get("kind") == "Pod":
        pod = spec
    if obj.get("kind") == "CronJob":
        pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}) \
            .get("spec") or {}
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def pulled_images(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(object kind/name, container name, image) of every container the objects would run."""
    out = []
    for obj in objects:
        where = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        for c in _containers(obj):
            out.append((where, str(c.get("name")), str(c.get("image"))))
    return out
