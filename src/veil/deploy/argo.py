"""Argo CD objects as data, and where each lives in the GitOps repository.

    teams.yaml                         the teams (written by the platform's admins)
    charts/veil-wrapper/, veil-alias/  Veil's charts, copied in so Argo CD can reach them
    teams/T/project.yaml               AppProject T: sources = this repo, destinations = the
                                       team namespace T, cluster-scoped kinds = Namespace T only
    teams/T/namespace.yaml             Application T: syncs teams/T/namespace/
    teams/T/namespace/namespace.yaml   the Namespace T
    teams/T/apps/A.yaml                Application T--A: the deployment (Helm, image by digest)
    teams/T/aliases/L.yaml             Application T--L: the alias, `target: A` (one line)
    teams/T/charts/A/                  a deployment's own chart (chart.path)

Application names share Argo CD's namespace across teams, so they join team and app with "--"
(which neither may contain).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from veil.deploy.schema import GROUP_VERSION

__all__ = [
    "ARGOCD_NAMESPACE",
    "IMAGE_ANNOTATION",
    "ROLE_ANNOTATION",
    "Layout",
    "alias_application",
    "app_project",
    "deployment_application",
    "destination",
    "dump",
    "load",
    "namespace_application",
    "namespace_manifest",
]

ARGOCD_NAMESPACE = "argocd"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
IMAGE_ANNOTATION = "veil.dev/image"
WRAPPER_DIR = "charts/veil-wrapper"
ALIAS_DIR = "charts/veil-alias"
_FINALIZER = "resources-finalizer.argocd.argoproj.io"


@dataclass(frozen=True)
class Layout:
    """Paths (relative to the repository's top) of one team's objects."""

    team: str

    @property
    def dir(self) -> str:
        return f"teams/{self.team}"

    @property
    def project(self) -> str:
        return f"{self.dir}/project.yaml"

    @property
    def namespace_app(self) -> str:
        return f"{self.dir}/namespace.yaml"

    @property
    def namespace_dir(self) -> str:
        return f"{self.dir}/namespace"

    def app(self, app: str) -> str:
        return f"{self.dir}/apps/{app}.yaml"

    def alias(self, alias: str) -> str:
        return f"{self.dir}/aliases/{alias}.yaml"

    def chart(self, app: str) -> str:
        return f"{self.dir}/charts/{app}"


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(obj: Mapping[str, Any]) -> str:
    """Deterministic YAML: sorted keys, block style, no line folding."""
    return yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     width=4096, allow_unicode=True)


def load(text: str | None) -> Any:
    """One YAML document (None for no text or text that is not YAML)."""
    if not text:
        return None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return None


def destination(cluster: str, namespace: str) -> dict[str, str]:
    """A cluster is named by its API server URL or by its Argo CD cluster name."""
    key = "server" if "://" in cluster else "name"
    return {key: cluster, "namespace": namespace}


def _metadata(name: str, team: str, role: str, **extra: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "veil", "veil.dev/team": team,
              "veil.dev/role": role}
    labels.update({f"veil.dev/{k}": v for k, v in extra.items()})
    return {"name": name, "namespace": ARGOCD_NAMESPACE, "labels": labels}


def _sync(prune: bool = True) -> dict[str, Any]:
    return {"automated": {"prune": prune, "selfHeal": True},
            "syncOptions": ["ServerSideApply=true"]}


def deployment_application(*, team: str, app: str, repo_url: str, revision: str,
                           chart_path: str, values: Mapping[str, Any], cluster: str,
                           image: str) -> dict[str, Any]:
    meta = _metadata(f"{team}--{app}", team, "deployment", app=app)
    meta["annotations"] = {IMAGE_ANNOTATION: image}
    meta["finalizers"] = [_FINALIZER]
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Application",
        "metadata": meta,
        "spec": {
            "project": team,
            "source": {
                "repoURL": repo_url,
                "targetRevision": revision,
                "path": chart_path,
                "helm": {"releaseName": app, "valuesObject": dict(values)},
            },
            "destination": destination(cluster, team),
            "syncPolicy": _sync(),
        },
    }


def alias_application(*, team: str, alias: str, target: str, repo_url: str, revision: str,
                      cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Application",
        "metadata": {**_metadata(f"{team}--{alias}", team, "alias", alias=alias),
                     "finalizers": [_FINALIZER]},
        "spec": {
            "project": team,
            "source": {
                "repoURL": repo_url,
                "targetRevision": revision,
                "path": ALIAS_DIR,
                "helm": {"releaseName": alias, "valuesObject": {"target": target}},
            },
            "destination": destination(cluster, team),
            "syncPolicy": _sync(),
        },
    }


def app_project(*, team: str, description: str, repo_url: str,
                clusters: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "AppProject",
        "metadata": _metadata(team, team, "project"),
        "spec": {
            "description": description or f"team {team}: its namespace only",
            "sourceRepos": [repo_url],
            "destinations": [destination(c, team) for c in sorted(set(clusters))],
            # the one cluster-scoped object a team may have: its own Namespace
            "clusterResourceWhitelist": [{"group": "", "kind": "Namespace", "name": team}],
        },
    }


def namespace_application(*, team: str, repo_url: str, revision: str, path: str,
                          cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Application",
        "metadata": _metadata(team, team, "namespace"),
        "spec": {
            "project": team,
            "source": {"repoURL": repo_url, "targetRevision": revision, "path": path},
            "destination": destination(cluster, team),
            # never prune a namespace: deleting it would delete every app in it
            "syncPolicy": _sync(prune=False),
        },
    }


def namespace_manifest(team: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": team,
            "labels": {
                "app.kubernetes.io/managed-by": "veil",
                "veil.dev/team": team,
                "pod-security.kubernetes.io/enforce": "baseline",
            },
        },
    }
