"""An in-memory `Runner` for unit tests of the use case: containers are records; a test says
how each image behaves (runs on, exits with a code, prints a line)."""

from __future__ import annotations

from dataclasses import dataclass, field

from veil.errors import OperationalError
from veil.local.runner import LABEL_SPEC, Container, ContainerSpec

__all__ = ["Behaviour", "FakeRunner"]


@dataclass(frozen=True)
class Behaviour:
    state: str = "running"  # or "exited"
    exit_code: int | None = None
    output: str = ""
    processes: tuple[str, ...] = ("python3 app.py",)  # the launcher has exec'd the program


@dataclass
class FakeRunner:
    behaviours: dict[str, Behaviour] = field(default_factory=dict)  # image → what it does
    networks: dict[str, str] = field(default_factory=dict)  # name → mesh
    running: dict[str, tuple[ContainerSpec, Behaviour]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)  # names, in order, for assertions
    removed: list[str] = field(default_factory=list)
    taken_ports: set[int] = field(default_factory=set)
    usable: bool = True

    def check(self) -> None:
        if not self.usable:
            raise OperationalError("`podman` is not installed",
                                   hint="install the Debian package `podman`")

    def ensure_network(self, name: str, mesh: str, image: str | None = None) -> str:
        self.networks[name] = mesh
        return "10.89.0.1"

    def remove_network(self, name: str) -> None:
        self.networks.pop(name, None)

    def containers(self, mesh: str | None = None) -> list[Container]:
        out = []
        for name, (spec, b) in sorted(self.running.items()):
            if mesh is None or spec.mesh == mesh:
                out.append(Container(
                    name=name, mesh=spec.mesh, service=spec.service,
                    spec=spec.labels()[LABEL_SPEC], image=spec.image,
                    image_digest=spec.image.partition("@")[2] or None, state=b.state,
                    exit_code=b.exit_code, ports=list(spec.publish)))
        return out

    def start(self, spec: ContainerSpec) -> None:
        if spec.name in self.running:
            raise OperationalError(f"the container name {spec.name} is in use")
        for host, _ in spec.publish:
            if host in self.taken_ports:
                raise OperationalError(f"service {spec.service}: port 127.0.0.1:{host} is "
                                       "already taken on this machine",
                                       hint="stop what listens there, or give the service "
                                       "another APP_SERVICE_PORT")
        b = self.behaviours.get(spec.image.split("@")[0], Behaviour())
        self.running[spec.name] = (spec, b)
        self.started.append(spec.name)

    def remove(self, name: str) -> None:
        if self.running.pop(name, None) is not None:
            self.removed.append(name)

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> str | None:
        entry = self.running.get(name)
        return entry[1].output if entry else ""

    def processes(self, name: str) -> list[str]:
        entry = self.running.get(name)
        return list(entry[1].processes) if entry and entry[1].state == "running" else []
