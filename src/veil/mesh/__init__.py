"""The use case "apply a mesh", shared by `veil apply -f mesh.yaml`, `veil up` and the platform.

    from veil.manifest.load import load_mesh
    from veil.mesh import MeshOptions, apply_mesh

    result = apply_mesh(load_mesh("mesh.yaml"), MeshOptions(mode="debug"),
                        progress=lambda stage, msg: print(stage, msg))
    result.sessions            # per session: plan.change (created/updated/unchanged/unknown),
                               # plan.diff, written (version, hash) after an upload
    result.config_id("app")    # SCONE_CONFIG_ID of service `app`: namespace/session/service
    result.chart_dir           # target/helm (the umbrella chart)

Stages, one package each way down: `descriptions` (index / registry lookup) → `veil.resolve`
→ `veil.policy` (compile, pure) → `plan` (compare with CAS, pure) → `store` (CAS, one
transaction, identity checked first via `trust`) → `chart`.
"""

from veil.mesh.apply import (
    Connect,
    MeshOptions,
    MeshResult,
    Progress,
    SessionOutcome,
    apply_mesh,
    release_name,
)
from veil.mesh.descriptions import Descriptions, Found, IndexThenRegistry, InMemory
from veil.mesh.store import MemoryStore, SessionStore

__all__ = [
    "Connect",
    "Descriptions",
    "Found",
    "InMemory",
    "IndexThenRegistry",
    "MemoryStore",
    "MeshOptions",
    "MeshResult",
    "Progress",
    "SessionOutcome",
    "SessionStore",
    "apply_mesh",
    "release_name",
]
