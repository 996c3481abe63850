"""What `veil up` needs from a container engine, as a protocol: podman implements it, a fake
stands in for it in unit tests.

Every container and network `veil up` makes carries labels (`LABEL_*`): which mesh, which
service, and a digest of everything it was started with, so that `veil up` again keeps what did
not change and `veil ps`/`veil down` find what belongs to a mesh without a state file of their
own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from veil.errors import OperationalError

__all__ = [
    "LABEL_MESH", "LABEL_SERVICE", "LABEL_SPEC", "Container", "ContainerSpec", "ImageNotPulled",
    "Runner",
    "container_name", "network_name",
]

LABEL_MESH = "dev.veil.mesh"  # the mesh's namespace
LABEL_SERVICE = "dev.veil.service"
LABEL_SPEC = "dev.veil.spec"  # digest of the ContainerSpec: unchanged spec, container kept


def network_name(namespace: str) -> str:
    return f"veil-{namespace}"


def container_name(namespace: str, service: str) -> str:
    return f"veil-{namespace}-{service}"


@dataclass(frozen=True)
class ContainerSpec:
    """One service's container: image pinned by digest, the launcher's three variables."""

    mesh: str
    service: str
    image: str
    network: str
    env: dict[str, str]  # SCONE_CONFIG_ID, SCONE_CAS_ADDR, SCONE_CAS_KEY: nothing secret
    publish: list[tuple[int, int]] = field(default_factory=list)  # (host port, container port)
    # `build.host_paths`: host folders bind-mounted read-only at the same path (the only mounts
    # the launcher accepts; outside the measurement)
    mounts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return container_name(self.mesh, self.service)

    def digest(self) -> str:
        doc: dict[str, object] = {
            "image": self.image, "network": self.network, "env": self.env,
            "publish": self.publish, "service": self.service, "mesh": self.mesh}
        if self.mounts:  # only then: the digest of a container without mounts stays as it was
            doc["mounts"] = self.mounts
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def labels(self) -> dict[str, str]:
        return {LABEL_MESH: self.mesh, LABEL_SERVICE: self.service, LABEL_SPEC: self.digest()}


class ImageNotPulled(OperationalError):
    """The image is neither in local storage nor pullable from its registry."""

    def __init__(self, image: str, detail: str) -> None:
        super().__init__(f"the image {image} cannot be pulled:\n{detail}",
                         hint="build and push it with `veil apply -f service.yaml`, and check "
                         "that its registry runs")
        self.image = image


@dataclass(frozen=True)
class Container:
    name: str
    mesh: str
    service: str
    spec: str  # LABEL_SPEC
    image: str
    image_digest: str | None
    state: str  # created | running | exited | ...
    exit_code: int | None
    ports: list[tuple[int, int]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"


class Runner(Protocol):
    def check(self) -> None:
        """Raise OperationalError when the engine is not usable (not installed, ...)."""

    def ensure_network(self, name: str, mesh: str, image: str | None = None) -> str:
        """Create the network if needed; return its gateway address (the host, seen from it).
        With `image`, make sure that address exists on this host (so a server can listen
        there before any service starts); `ImageNotPulled` when `image` cannot be had."""

    def remove_network(self, name: str) -> None: ...

    def containers(self, mesh: str | None = None) -> list[Container]:
        """The containers `veil up` made (of one mesh, or all)."""

    def start(self, spec: ContainerSpec) -> None:
        """Create and start the container (detached); the name must be free."""

    def remove(self, name: str) -> None:
        """Stop and remove the container; nothing if it does not exist."""

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> str | None:
        """The container's output; with follow, stream it to stdout and return None."""

    def processes(self, name: str) -> list[str]:
        """The command lines running in the container (empty when it does not run)."""
