"""Building meshes and service descriptions for resolution tests."""

from __future__ import annotations

from typing import Any

from veil.manifest.description import ServiceDescription
from veil.manifest.load import Loaded, load_mesh
from veil.manifest.models import GenService

MESH_HEAD = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: cas.example:8081
policy:
  namespace: ns
"""


def description(name: str, *, local: dict[str, str] | None = None,
                global_: dict[str, str | None] | None = None,
                secrets: list[str] | None = None, imports: list[str] | None = None,
                files: list[dict[str, Any]] | None = None) -> ServiceDescription:
    svc = GenService.model_validate({
        "apiVersion": "scone/5.8",
        "kind": "genservice",
        "environment": {
            "local": [{"name": k, "value": v} for k, v in (local or {}).items()],
            "global": [{"name": k, "value": v} for k, v in (global_ or {}).items()],
        },
        "secrets": {"global": [{"name": s, "kind": "ascii", "size": 8} for s in secrets or []],
                    "import": imports or []},
        "injection_files": files or [],
        "build": {"name": name, "to": f"reg.example/{name}:1", "command": f"python3 {name}.py"},
    })
    return ServiceDescription.from_genservice(svc)


def mesh(services: list[tuple[str, str]], env: str = "", file: str = "mesh.yaml") -> Loaded:
    text = MESH_HEAD + "services:\n" + "".join(
        f"  - name: {n}\n    image: reg.example/{img}:1\n" for n, img in services)
    return load_mesh(file, text + env)


def index(*descs: ServiceDescription) -> dict[str, ServiceDescription]:
    return {d.image: d for d in descs}
