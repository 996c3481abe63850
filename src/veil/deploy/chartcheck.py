"""The chart part of the pre-deploy checks: the values the Application will carry, the chart
rendered with them by Helm's engine, and what its pods would pull.

Two kinds of chart:

- Veil's wrapper chart (`chart.wrapper`): Veil computes `image` (repository, tag, digest),
  `env`, `sidecars` (pinned by digest), the ServiceAccount's role annotation and `veil`, over the
  deployment's `values`. Every container must pull the deployed image or a declared sidecar, by
  digest.
- A chart folder (`chart.path`, e.g. the umbrella chart `veil apply -f mesh.yaml` writes): its
  images are its own, already pinned; Veil passes the deployment's `values` and sets the role
  annotation on every `serviceAccount.annotations` block its values.yaml has (the chart's own,
  and one per subchart). Every container must pull by digest an image the registry has, and
  one of them must be the deployed image.

In both, every rendered ServiceAccount must carry the role when there is one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from veil.deploy.images import Images
from veil.deploy.load import LoadedDeployment
from veil.deploy.render import WRAPPER_CHART, bundled_chart, pulled_images, render_chart
from veil.errors import VeilError
from veil.image.reference import parse_reference

if TYPE_CHECKING:
    from veil.deploy.checks import Report

__all__ = ["ROLE_ANNOTATION", "chart_values", "check_chart"]

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def check_chart(loaded: LoadedDeployment, report: Report, images: Images, problem: Any) -> None:
    dep = loaded.model
    chart = bundled_chart(WRAPPER_CHART) if dep.chart.wrapper else loaded.path(dep.chart.path
                                                                              or "")
    if chart is None:
        problem("the path leaves the deployments folder", ("chart", "path"),
                value=dep.chart.path, allowed=f"a path inside {loaded.base_dir}")
        return
    report.chart_dir = chart
    try:
        report.values = chart_values(loaded, report, chart)
        report.objects = render_chart(chart, report.values, release=dep.app,
                                      namespace=dep.team)
    except VeilError as err:
        problem(err.message, ("chart",))
        return
    if dep.chart.wrapper:
        _wrapper_pulls(report, problem)
    else:
        _folder_pulls(report, images, problem)
    _roles(report, problem)


def chart_values(loaded: LoadedDeployment, report: Report, chart: Path) -> dict[str, Any]:
    """The Helm values the Application carries."""
    dep = loaded.model
    assert report.image is not None
    values: dict[str, Any] = copy.deepcopy(dep.values)
    annotations = {ROLE_ANNOTATION: report.role_arn} if report.role_arn else {}
    if not dep.chart.wrapper:
        if annotations:
            _annotate(values, _default_values(chart), annotations)
        return values
    ref = report.image.reference
    values["kind"] = dep.chart.wrapper
    values["image"] = {"repository": ref.name, "tag": ref.tag or "",
                       "digest": report.image.digest}
    values["env"] = dict(sorted(dep.env.items()))
    values["sidecars"] = [
        {"name": s.name, "image": report.sidecars[s.name], "env": dict(sorted(s.env.items())),
         "args": list(s.args)}
        for s in dep.sidecars if s.name in report.sidecars
    ]
    values["serviceAccount"] = {"annotations": annotations}
    values["veil"] = {"team": dep.team, "app": dep.app}
    return values


def _default_values(chart: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _annotate(values: dict[str, Any], defaults: dict[str, Any],
              annotations: dict[str, str]) -> None:
    """Set the role on the chart's own serviceAccount block and on each subchart's."""
    blocks = [((), defaults)] + [((k,), v) for k, v in defaults.items() if isinstance(v, dict)]
    for path, block in blocks:
        sa = block.get("serviceAccount")
        if not (isinstance(sa, dict) and "annotations" in sa):
            continue
        node = values
        for key in (*path, "serviceAccount"):
            node = node.setdefault(key, {})
        node["annotations"] = {**(node.get("annotations") or {}), **annotations}


def _wrapper_pulls(report: Report, problem: Any) -> None:
    assert report.image is not None
    expected = report.image.pinned
    allowed = {expected, *report.sidecars.values()}
    pulls = pulled_images(report.objects)
    if not any(image == expected for _, _, image in pulls):
        problem(f"the chart does not pull the deployed image {expected}", ("chart",),
                allowed="a chart whose pods use image.repository@image.digest")
    for where, container, image in pulls:
        if image not in allowed:
            problem(f"the chart's {where} container {container!r} pulls {image}, which is "
                    "neither the deployed image nor a declared sidecar (by digest)",
                    ("chart",), allowed=", ".join(sorted(allowed)))


def _folder_pulls(report: Report, images: Images, problem: Any) -> None:
    assert report.image is not None
    expected = report.image.pinned
    pulls = pulled_images(report.objects)
    if not any(image == expected for _, _, image in pulls):
        problem(f"the chart does not pull the deployed image {expected}", ("chart",),
                allowed="a chart one of whose pods pulls it by digest")
    checked: dict[str, str | None] = {expected: None}
    for where, container, image in pulls:
        if image not in checked:
            checked[image] = _pinned_and_present(image, images)
        why = checked[image]
        if why:
            problem(f"the chart's {where} container {container!r} pulls {image}: {why}",
                    ("chart",), allowed="images pinned by digest that their registry has")


def _pinned_and_present(image: str, images: Images) -> str | None:
    try:
        ref = parse_reference(image)
    except VeilError as err:
        return err.message
    if ref.digest is None:
        return "by tag, which may move; pin it by digest"
    try:
        images.digest(ref)
    except VeilError as err:
        return err.message
    return None


def _roles(report: Report, problem: Any) -> None:
    if not report.role_arn:
        return
    for obj in report.objects:
        if obj.get("kind") != "ServiceAccount":
            continue
        meta = obj.get("metadata") or {}
        if (meta.get("annotations") or {}).get(ROLE_ANNOTATION) != report.role_arn:
            problem(f"the chart's ServiceAccount {meta.get('name')} does not carry the role "
                    f"annotation {ROLE_ANNOTATION}", ("chart",),
                    allowed=f"serviceAccount.annotations in its values ({report.role_arn})")
