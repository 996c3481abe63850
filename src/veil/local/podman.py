"""The `Runner` of this machine: podman, with the settings Veil writes for its buildah/podman
calls (runc, cgroupfs, overlay storage, loopback registries over plain HTTP).

Each service runs detached with `--init` (so SIGTERM stops a Python PID 1), on the mesh's own
network where the other services find it by its name (the network's DNS), its port published
on 127.0.0.1 only. podman's errors are translated at this edge: a port that is taken, an image
that cannot be pulled, podman or its `--init` binary missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence

from veil.errors import OperationalError
from veil.image.tools import container_env, is_loopback, tail
from veil.local.runner import (
    LABEL_MESH,
    LABEL_SERVICE,
    LABEL_SPEC,
    Container,
    ContainerSpec,
    ImageNotPulled,
)

__all__ = ["PodmanRunner"]

_INIT = "/usr/libexec/podman/catatonit"


class PodmanRunner:
    def __init__(self) -> None:
        self._env: dict[str, str] | None = None

    def _podman(self, args: Sequence[str], *, check: bool = True, what: str = "",
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        if self._env is None:
            self._env = container_env()
        try:
            proc = subprocess.run(["podman", *args], capture_output=True, text=True,
                                  env=self._env, check=False, timeout=timeout)
        except FileNotFoundError:
            self.check()
            raise
        if check and proc.returncode != 0:
            raise OperationalError(f"{what or 'podman ' + args[0]}:\n"
                                   f"{tail((proc.stderr or proc.stdout).encode())}")
        return proc

    def check(self) -> None:
        if shutil.which("podman") is None:
            raise OperationalError(
                "`podman` is not installed: `veil up` runs every service as a podman container",
                hint="install the Debian package `podman` (scripts/setup.sh does)")
        if not os.path.exists(_INIT):
            raise OperationalError(
                f"podman's --init binary {_INIT} is missing",
                hint="install the Debian package `catatonit` (scripts/setup.sh does)")

    def ensure_network(self, name: str, mesh: str, image: str | None = None) -> str:
        inspect = ["network", "inspect", name, "--format",
                   "{{range .Subnets}}{{.Gateway}} {{end}}"]
        found = self._podman(inspect, check=False)  # one call when the network exists
        if found.returncode != 0:
            self._podman(["network", "create", "--label", f"{LABEL_MESH}={mesh}", name],
                         what=f"creating the network {name}")
            found = self._podman(inspect, what=f"reading the network {name}")
        gateway = found.stdout.split()[0]
        if image is not None and not _is_local_address(gateway):
            # the bridge (and so the gateway address on this host) comes up with the first
            # container that joins; the local CAS listens there before any service starts.
            # The image has no shell and no coreutils: its own Python (the launcher's) does
            # nothing, without reading a module beyond its start.
            proc = self._podman(["run", "--rm", "--network", name, "--entrypoint",
                                 "/usr/bin/python3", "--pull", "missing",
                                 *(["--tls-verify=false"] if is_loopback(image) else []),
                                 image, "-I", "-S", "-B", "-c", ""],
                                check=False)
            if proc.returncode != 0:
                text = proc.stderr or proc.stdout
                if _pull_failed(text):
                    raise ImageNotPulled(image, tail(text.encode(), 4))
                raise OperationalError(f"bringing up the network {name}:\n"
                                       f"{tail(text.encode())}")
        return gateway

    def remove_network(self, name: str) -> None:
        self._podman(["network", "rm", "-f", name], check=False)

    def containers(self, mesh: str | None = None) -> list[Container]:
        label = f"{LABEL_MESH}={mesh}" if mesh else LABEL_MESH
        out = self._podman(["ps", "-a", "--filter", f"label={label}", "--format", "json"],
                        what="listing the containers of `veil up`").stdout
        found = []
        for c in json.loads(out or "[]"):
            labels = c.get("Labels") or {}
            ports = [(int(p.get("host_port", 0)), int(p.get("container_port", 0)))
                     for p in c.get("Ports") or []]
            image = str(c.get("Image", ""))
            state = str(c.get("State", "")).lower()
            found.append(Container(
                name=(c.get("Names") or [""])[0], mesh=labels.get(LABEL_MESH, ""),
                service=labels.get(LABEL_SERVICE, ""), spec=labels.get(LABEL_SPEC, ""),
                image=image, image_digest=image.partition("@")[2] or None,
                # "stopped": exited, not yet cleaned up by conmon; the exit code is final
                state="exited" if state in ("exited", "stopped") else state,
                exit_code=c.get("ExitCode") if state in ("exited", "stopped") else None,
                ports=ports))
        return sorted(found, key=lambda c: (c.mesh, c.service))

    def start(self, spec: ContainerSpec) -> None:
        line = ["run", "-d", "--init", "--name", spec.name, "--network", spec.network,
                "--network-alias", spec.service, "--hostname", spec.service,
                "--pull", "missing"]
        if is_loopback(spec.image):
            line.append("--tls-verify=false")
        for k, v in sorted(spec.labels().items()):
            line += ["--label", f"{k}={v}"]
        for k, v in sorted(spec.env.items()):
            line += ["-e", f"{k}={v}"]
        for host, port in spec.publish:
            line += ["-p", f"127.0.0.1:{host}:{port}"]
        for path in spec.mounts:  # read-only, at the same path: what the image's plan names
            line += ["--mount", f"type=bind,source={path},target={path},readonly=true"]
        proc = self._podman([*line, spec.image], check=False)
        if proc.returncode == 0:
            return
        text = proc.stderr or proc.stdout
        self.remove(spec.name)  # podman may leave a created container behind
        low = text.lower()
        if "address already in use" in low or "port is already allocated" in low:
            ports = ", ".join(f"127.0.0.1:{h}" for h, _ in spec.publish)
            raise OperationalError(
                f"service {spec.service}: port {ports} is already taken on this machine",
                hint="stop what listens there, or give the service another APP_SERVICE_PORT")
        if _pull_failed(text):
            err = ImageNotPulled(spec.image, tail(text.encode(), 4))
            raise OperationalError(f"service {spec.service}: {err.message}", hint=err.hint)
        missing = [m for m in spec.mounts if not os.path.isdir(m)]
        if missing:
            raise OperationalError(
                f"service {spec.service}: build.host_paths {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not a folder on this machine",
                hint="create the folder, or rebuild the service without it in build.host_paths")
        raise OperationalError(f"service {spec.service}: podman could not start it:\n"
                               f"{tail(text.encode(), 6)}")

    def remove(self, name: str) -> None:
        self._podman(["rm", "-f", "-t", "5", name], check=False)

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> str | None:
        line = ["logs", *(["--tail", str(tail)] if tail else []), name]
        if follow:
            if self._env is None:
                self._env = container_env()
            subprocess.run(["podman", "logs", "-f", name], env=self._env, check=False)
            return None
        proc = self._podman(line, check=False)
        return proc.stdout + proc.stderr


    def processes(self, name: str) -> list[str]:
        proc = self._podman(["top", name, "args"], check=False)
        return proc.stdout.splitlines()[1:] if proc.returncode == 0 else []


def _pull_failed(text: str) -> bool:
    low = text.lower()
    return ("trying to pull" in low or "manifest unknown" in low or "initializing source" in low
            or "image not known" in low)


def _is_local_address(ip: str) -> bool:
    import socket

    try:
        with socket.socket() as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False
