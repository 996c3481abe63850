"""The end-to-end tests' sessions come from `veil apply -f mesh.yaml`, as a user's would."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Cas
from veil.cli import main


def mesh_apply(folder: Path, cas: Cas, namespace: str, services: dict[str, str],
               env: dict[str, str] | None = None, mode: str = "debug") -> dict[str, str]:
    """Write a mesh of `services` (name → image) for the test CAS (its key pinned in the mesh)
    and apply it; returns each service's config id."""
    lines = ["apiVersion: scone/5.8", "kind: mesh", "cas:", "  - name: cas",
             '    alias: ["image", "security", "access", "attestation"]',
             f"    cas_url: {cas.addr}", f"    cas_key: {cas.key}", "policy:",
             f"  namespace: {namespace}", "services:"]
    for name, image in services.items():
        lines += [f"  - name: {name}", f"    image: {image}"]
    lines += ["env:"] + [f"  - name: {k}\n    value: {v!r}" for k, v in (env or {}).items()]
    folder.mkdir(parents=True, exist_ok=True)
    mesh = folder / f"mesh-{namespace}.yaml"
    mesh.write_text("\n".join(lines) + "\n")
    code = main(["apply", "-f", str(mesh), "--mode", mode, "-t", str(folder / "target")])
    assert code == 0, f"veil apply -f {mesh} failed"
    return {name: f"{namespace}/{name}/{name}" for name in services}
