"""The use case `veil up`: a whole mesh on this machine.

    podman usable? → the mesh's network → the images' registry (started if it is a loopback one
    that does not answer) → a CAS: `--cas`, else the mesh's security CAS if it answers, else a
    local one → `veil.mesh.apply_mesh` (the sessions into CAS, the same use case as `veil apply`)
    → one container per service behind its launcher → wait until each is up

A service is up when its launcher attested and its program started — the launcher's process
(`/opt/veil/launch.py`) has been replaced by the program's, and the program answers on its
port when it publishes one — or when it finished with exit code 0 and no word from the
launcher. It failed when it exited
otherwise; the launcher's last line then says why (CAS's reason for a refusal). Containers whose
spec did not change keep running; changed ones are replaced. A Ctrl-C removes what this run
started (containers, the network it made, the CAS and registries it started) and nothing else.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from veil.errors import OperationalError
from veil.local.runner import Container, ContainerSpec, ImageNotPulled, Runner, network_name
from veil.local.state import failed_services, forget_mesh, meshes, record_mesh
from veil.manifest.load import Loaded
from veil.manifest.models import Mesh

__all__ = ["ServiceStatus", "UpOptions", "UpResult", "down", "launcher_failure", "status", "up"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpOptions:
    mode: str = "production"
    cas: str | None = None  # --cas HOST:PORT
    target: Path = Path("target")
    timeout: float = 60.0  # seconds for every service to come up
    # a started service without a port is up when its program still runs this long after the
    # launcher exec'd it (with a port: when the program answers there)
    grace: float = 1.0


@dataclass
class ServiceStatus:
    service: str
    container: str
    image: str
    state: str  # up | done | failed | starting | ...
    attested: bool | None
    port: int | None = None
    health: str = "-"
    message: str = ""
    mesh: str = ""


@dataclass
class UpResult:
    namespace: str
    cas_addr: str
    local_cas: bool
    registries: list[str] = field(default_factory=list)
    services: list[ServiceStatus] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ServiceStatus]:
        return [s for s in self.services if s.state in ("failed", "missing")]


def _quiet(_message: str) -> None:
    pass


def _mesh_name(mesh: Mesh) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", mesh.policy.namespace.lower()).strip("-") or "mesh"


def _security_url(mesh: Mesh) -> str:
    for c in mesh.cas:
        if "security" in c.alias:
            return c.cas_url
    return mesh.cas[0].cas_url


def _answers(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or addr, int(port or 8081)),
                                      timeout=1):
            return True
    except (OSError, ValueError):
        return False


def _seen_from_containers(addr: str, gateway: str) -> str:
    """A CAS on this host's loopback is reached from the mesh network through its gateway
    (it must then listen there too, e.g. on 0.0.0.0)."""
    host, _, port = addr.rpartition(":")
    if host in ("127.0.0.1", "localhost", "[::1]"):
        return f"{gateway}:{port}"
    return addr


def _port(resolved: object, service: str) -> int | None:
    svc = resolved.services[service]  # type: ignore[attr-defined]
    value = svc.env.get("APP_SERVICE_PORT") or resolved.helm_env.get(  # type: ignore[attr-defined]
        "APP_SERVICE_PORT")
    if value is None:
        return None
    try:
        port = int(str(value.value))
    except ValueError:
        raise OperationalError(f"service {service}: APP_SERVICE_PORT {value.value!r} is not a "
                               "port number") from None
    return port if 0 < port < 65536 else None


# the launcher's one line on success: "attested <config id> (<platform>), measurement <hex>,
# starting <program>"
_STARTED = re.compile(r"attested \S+ \([^)]*\), measurement [0-9a-f]+, starting ")


def launcher_failure(logs: str) -> str | None:
    """The launcher's reason when it did not start the program (its last `veil-launcher:`
    line); None when it started it (its last line is the one it prints on success)."""
    lines = [ln.removeprefix("veil-launcher: ") for ln in logs.splitlines()
             if ln.startswith("veil-launcher: ")]
    if not lines or _STARTED.match(lines[-1]):
        return None
    return lines[-1]


def _answers_local(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


_LAUNCHER = "/opt/veil/launch.py"
# `podman run --init`'s process 1: its arguments keep the container's first command line (the
# launcher's) for as long as the container runs, whatever the launcher exec'd
_INIT = "/run/podman-init "


def _judge(c: Container, runner: Runner, since: float, port: int | None) -> ServiceStatus:
    st = ServiceStatus(c.service, c.name, c.image, c.state, None, port, mesh=c.mesh)
    if c.state == "exited":
        logs = runner.logs(c.name, tail=40) or ""
        reason = launcher_failure(logs)
        if c.exit_code == 0 and reason is None:
            st.state, st.attested = "done", True
        elif reason is not None:
            st.state, st.attested = "failed", False
            st.message = f"refused, the program never started: {reason}"
        else:
            st.state, st.attested = "failed", True
            last = " | ".join(logs.strip().splitlines()[-3:])
            st.message = f"the program exited at once with code {c.exit_code}: {last}"
        return st
    if c.state != "running":
        st.state = "starting"  # created, configured, ...: not yet running
        return st
    procs = [p for p in runner.processes(c.name) if not p.startswith(_INIT)]
    if not procs or any(_LAUNCHER in p for p in procs):
        st.state = "starting"  # measuring and attesting (or between two `podman top`s)
        return st
    st.attested = True  # the launcher exec'd the program: CAS configured it
    if port is not None:
        ok = _answers_local(port)
        st.health = "ok" if ok else "no answer"
        st.state = "up" if ok else "starting"
    else:
        st.state = "up"
    return st


def _reason(err: OperationalError, service: str) -> str:
    """The runner's error as a line of the service's status (without the service's name)."""
    text = err.message.removeprefix(f"service {service}: ")
    return text + (f"; {err.hint}" if err.hint else "")


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C does not interrupt the clean-up of the first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def up(doc: Loaded, options: UpOptions, runner: Runner, progress: Progress = _quiet,
       *, apply: Callable[..., object] | None = None) -> UpResult:
    from veil.local.cas import ensure_local_cas, stop_local_cas
    from veil.local.registry import ensure_registries, stop_registries

    mesh: Mesh = doc.model
    runner.check()
    name = _mesh_name(mesh)
    net = network_name(name)
    images = [s.image for s in mesh.services]
    not_started: dict[str, str] = {}  # service -> why podman could not start it
    local_started = False
    registries: list[str] = []
    record_mesh(name)  # `veil ps`, `veil down --all` of this Veil home know it from now on
    pool = ThreadPoolExecutor(1, thread_name_prefix="veil-up")
    network: Future[str] | None = None
    try:
        registries = ensure_registries(images)
        for r in registries:
            progress(f"started a local registry on {r} (storage under Veil's home)")
        progress(f"network {net}")
        # podman makes the network while this thread loads the mesh use case (start-up time)
        network = pool.submit(runner.ensure_network, net, name, images[0] if images else None)
        from veil.mesh.apply import MeshOptions, apply_mesh

        try:
            gateway = network.result()
        except ImageNotPulled as err:
            first = mesh.services[0].name
            record_mesh(name, {first: _reason(err, first)})
            raise OperationalError(f"service {first}: {err.message}", hint=err.hint) from None
        if options.cas:
            cas_host_addr, key, local = options.cas, None, False
        elif _answers(_security_url(mesh)):
            cas_host_addr, key, local = _security_url(mesh), None, False
        else:
            cas = ensure_local_cas(gateway)
            local_started = cas.started
            cas_host_addr, key, local = cas.addr, cas.key, True
            progress(f"{'started' if cas.started else 'using'} a local CAS on {cas.addr} "
                     "(state under Veil's home)")
        result = (apply or apply_mesh)(doc, MeshOptions(
            mode=options.mode,  # type: ignore[arg-type]
            target=options.target, write_chart=False, publish=False, cas_addr=cas_host_addr,
            cas_key=key),
            progress=lambda _stage, msg: progress(msg))
        out = UpResult(namespace=result.namespace,  # type: ignore[attr-defined]
                       cas_addr=cas_host_addr, local_cas=local, registries=registries)
        pinned = result.cas_key or key  # type: ignore[attr-defined]
        seen = _seen_from_containers(cas_host_addr, gateway)
        existing = {c.name: c for c in runner.containers(name)}
        specs = []
        for s in mesh.services:
            port = _port(result.resolved, s.name)  # type: ignore[attr-defined]
            spec = ContainerSpec(
                mesh=name, service=s.name, image=result.images[s.name],  # type: ignore[attr-defined]
                network=net, publish=[(port, port)] if port else [],
                mounts=list(result.resolved.services[s.name].description.host_paths),  # type: ignore[attr-defined]
                env={"SCONE_CONFIG_ID": result.config_id(s.name),  # type: ignore[attr-defined]
                     "SCONE_CAS_ADDR": seen, "SCONE_CAS_KEY": str(pinned or "")})
            specs.append((spec, port))
        wanted = {spec.name for spec, _ in specs}
        for c in existing.values():
            if c.name not in wanted:  # a service the mesh no longer has
                progress(f"removing {c.service} (no longer in the mesh)")
                runner.remove(c.name)
        since: dict[str, float] = {}
        for spec, _ in specs:
            old = existing.get(spec.name)
            if old is not None and old.spec == spec.digest() and old.state in (
                    "running", "exited") and not (old.state == "exited" and old.exit_code):
                out.kept.append(spec.service)
                since[spec.name] = 0.0
                continue
            if old is not None:
                progress(f"replacing {spec.service} (changed)")
                runner.remove(spec.name)
            progress(f"starting {spec.service} ({spec.image})")
            try:
                runner.start(spec)
            except OperationalError as err:  # a port taken, an image not pullable, ...
                not_started[spec.service] = _reason(err, spec.service)
                continue
            out.started.append(spec.service)
            since[spec.name] = time.monotonic()
        running = [(spec, port) for spec, port in specs if spec.service not in not_started]
        waited = {s.service: s for s in _wait(runner, name, running, since, options.timeout,
                                              options.grace, progress)}
        out.services = [waited.get(spec.service) or ServiceStatus(
            spec.service, spec.name, spec.image, "failed", None, port,
            message=not_started[spec.service]) for spec, port in specs]
        record_mesh(name, not_started)
        return out
    except KeyboardInterrupt:
        # as docker compose does on Ctrl-C: the whole mesh stops — its containers (the ones
        # that ran before this `veil up` too) and its network are removed, the CAS and
        # registries this run started are stopped; nothing of the mesh is left half-started
        with _sigint_ignored():
            if network is not None:  # let podman finish making the network, then remove it
                with contextlib.suppress(Exception):
                    network.result()
            progress(f"interrupted: removing the mesh {name} (containers and network)")
            down(runner, name, keep_servers=True)
            if local_started:
                stop_local_cas()
            if registries:
                stop_registries()
        raise
    finally:
        pool.shutdown(wait=False)


def _wait(runner: Runner, mesh: str, specs: list[tuple[ContainerSpec, int | None]],
          since: dict[str, float], timeout: float, grace: float,
          progress: Progress) -> list[ServiceStatus]:
    deadline = time.monotonic() + timeout
    ports = {spec.name: port for spec, port in specs}
    services = {spec.name: spec.service for spec, _ in specs}
    order = [spec.name for spec, _ in specs]
    running_since: dict[str, float] = {}  # a started service's program first seen running
    while True:
        found = {c.name: c for c in runner.containers(mesh)}
        states = []
        for n in order:
            c = found.get(n)
            if c is None:
                states.append(ServiceStatus(services[n], n, "", "missing", None,
                                            message="its container is gone (removed by "
                                            "someone else while starting?)"))
                continue
            st = _judge(c, runner, since.get(n, 0.0), ports[n])
            if st.state == "up" and ports[n] is None and since.get(n):
                # no port to ask: a program that exits at once must not pass for up
                first = running_since.setdefault(n, time.monotonic())
                if time.monotonic() - first < grace:
                    st.state = "starting"
            states.append(st)
        pending = [s.service for s in states if s.state not in ("up", "done", "failed",
                                                                 "missing")]
        if not pending:
            return states
        if time.monotonic() > deadline:
            for s in states:
                if s.state not in ("up", "done", "failed", "missing"):
                    s.state = "failed"
                    s.message = (f"not up after {timeout:.0f} s"
                                 + (f" (nothing answers on 127.0.0.1:{s.port})" if s.port else ""))
            return states
        progress(f"waiting for {', '.join(pending)}")
        time.sleep(0.05)


def _containers(runner: Runner, mesh: str | None) -> list[Container]:
    """The containers of `mesh`; None: of every mesh this Veil home runs (other users' meshes
    on the same podman are theirs)."""
    if mesh is not None:
        return runner.containers(mesh)
    mine = set(meshes())
    return [c for c in runner.containers(None) if c.mesh in mine]


def status(runner: Runner, mesh: str | None = None) -> list[ServiceStatus]:
    """What `veil ps` shows: every container `veil up` made (of one mesh, or of every mesh of
    this Veil home), and the services that podman could not create or start."""
    out = []
    containers = _containers(runner, mesh)
    for c in containers:
        port = c.ports[0][0] if c.ports else None
        st = _judge(c, runner, 0.0, port)
        out.append(st)
    have = {(c.mesh, c.service) for c in containers}
    for m in [mesh] if mesh is not None else meshes():
        for service, why in sorted(failed_services(m).items()):
            if (m, service) not in have:
                out.append(ServiceStatus(service, "-", "", "failed", None, message=why, mesh=m))
    return out


def down(runner: Runner, mesh: str | None, *, volumes: bool = False,
         keep_servers: bool = False) -> list[str]:
    """Remove the containers and the network of a mesh (None: of every mesh this Veil home
    runs) and forget it; stop the local CAS and registries when no mesh of this home runs any
    more (unless `keep_servers`); `volumes` deletes the local CAS's state."""
    from veil.local.cas import stop_local_cas
    from veil.local.registry import stop_registries

    removed = []
    names = [mesh] if mesh is not None else meshes()
    containers = _containers(runner, mesh)
    for c in containers:
        runner.remove(c.name)
        removed.append(c.service)
    for m in sorted(set(names) | {c.mesh for c in containers}):
        runner.remove_network(network_name(m))
        forget_mesh(m)
    if not keep_servers and not _containers(runner, None):
        stop_local_cas(forget=volumes)
        stop_registries()
    return removed


def mesh_name(doc: Loaded) -> str:
    return _mesh_name(doc.model)
