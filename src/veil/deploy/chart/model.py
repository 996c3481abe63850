"""What a mesh's Helm chart says, as data: an umbrella chart with one subchart per service.

Built from the applied mesh (`veil.mesh.chart`) and turned into files by `veil.deploy.chart.files`.
A subchart carries nothing secret and nothing CAS provisions: only the image (pinned by digest),
Kubernetes settings, and where the launcher finds CAS (address, its public key, the config id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChartSpec", "Subchart", "dns_label"]


def dns_label(name: str, limit: int = 63) -> str:
    """A Kubernetes DNS label from any name (`nginx_scone` → `nginx-scone`)."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:limit].strip("-")
    return out or "x"


@dataclass(frozen=True)
class Subchart:
    service: str  # the mesh service; also the subchart's name and its values key
    repository: str  # image repository (host/path)
    digest: str | None  # sha256:... — the chart runs exactly this image
    tag: str | None  # only when no digest is known (an image never pushed)
    port: int
    cas_addr: str
    cas_key: str | None  # the CAS's public key (base64 DER), pinned by the launcher
    config_id: str
    image_pull_secrets: tuple[str, ...] = ()
    replicas: int = 1
    annotations: dict[str, str] = field(default_factory=dict)  # pod annotations
    # the chart templates the service carries (`--helm-template DIR`): path -> text
    templates: tuple[tuple[str, str], ...] = ()
    # `build.host_paths`: host folders mounted read-only at the same path (the only mounts the
    # launcher accepts outside its own); none: the values and templates stay as they were
    host_paths: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        """The subchart's values.yaml, in the shape sconectl users know."""
        return {
            "replicaCount": self.replicas,
            "image": {"repository": self.repository, "digest": self.digest or "",
                      "tag": self.tag or "", "pullPolicy": "IfNotPresent"},
            "imagePullSecrets": [{"name": n} for n in self.image_pull_secrets],
            "nameOverride": "",
            "fullnameOverride": "",
            "serviceAccount": {"create": True, "name": "", "annotations": {}},
            "podAnnotations": dict(self.annotations),
            "podSecurityContext": {},
            "securityContext": {},
            "service": {"type": "ClusterIP", "port": self.port},
            "resources": {},
            "nodeSelector": {},
            "tolerations": [],
            "affinity": {},
            "scone": {"cas_addr": self.cas_addr, "cas_key": self.cas_key or "",
                      "config_id": self.config_id},
        } | ({"hostPaths": [
            {"name": f"host-path-{i}", "mountPath": p, "hostPath": p, "type": "Directory",
             "readOnly": True} for i, p in enumerate(self.host_paths)]}
            if self.host_paths else {})


@dataclass(frozen=True)
class ChartSpec:
    name: str  # the umbrella chart's name
    release: str
    namespace: str  # the CAS namespace of the mesh's sessions
    version: str = "0.1.0"
    app_version: str | None = None
    subcharts: tuple[Subchart, ...] = ()
    extra_values: dict[str, Any] = field(default_factory=dict)  # helm_extra_values, merged
