"""Running the platform: one uvicorn process serving the API, with its build workers beside it.

Several processes (on one machine or several) share the work by pointing `--db` at one
PostgreSQL database; each claims queued builds there. They must share the key file that seals
secret build args (`STATE_DIR/platform.key`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI

from veil.errors import UserError
from veil.platform.app import Platform, create_app
from veil.platform.build import BuildSettings
from veil.platform.sealing import Sealer
from veil.platform.store import JobStore, make_engine
from veil.platform.workers import PoolSettings, WorkerPool
from veil.platform.wrappers import publish_wrappers

__all__ = ["ServeOptions", "make_app", "parse_listen", "serve"]

DEFAULT_PORT = 8090


@dataclass(frozen=True)
class ServeOptions:
    state_dir: Path
    db_url: str | None = None
    workers: int = 2
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    build_timeout: float = 3600.0
    retention: float = 86400.0
    lease: float = 30.0
    python_version: str = "3.11"
    public_url: str | None = None
    log_level: str = "warning"
    gitops: Path | None = None  # a GitOps working copy: serve POST /deployments into it
    gitops_url: str | None = None
    deployments_dir: Path | None = None  # where request paths (code, chart.path) resolve


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = listen, str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--listen {listen!r}: the port is not a number from 1 to 65535",
                        hint="use HOST:PORT, e.g. 127.0.0.1:8090")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_app(opts: ServeOptions) -> FastAPI:
    state = opts.state_dir
    state.mkdir(parents=True, exist_ok=True)
    url = opts.db_url or f"sqlite:///{state / 'platform.db'}"
    store = JobStore(make_engine(url))
    sealer = Sealer.from_file(state / "platform.key")
    pool = WorkerPool(store, sealer, PoolSettings(
        workers=opts.workers, work_dir=state / "work", build_timeout=opts.build_timeout,
        retention=opts.retention, lease=opts.lease,
        build=BuildSettings(python_version=opts.python_version,
                            wheel_cache=state / "cache" / "wheels"),
    ))
    host, port = parse_listen(opts.listen)
    public = opts.public_url or f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    platform = Platform(store, sealer, pool, publish_wrappers(state), public.rstrip("/"))
    routers: list[APIRouter] = []
    if opts.gitops is not None:
        from veil.platform import deployments as dep

        routers.append(dep.deployments_router(dep.DeploymentSettings(
            opts.gitops, opts.deployments_dir or state / "deployments",
            repo_url=opts.gitops_url, records=dep.StoreRecords(store))))
    return create_app(platform, routers)


def serve(opts: ServeOptions) -> None:
    host, port = parse_listen(opts.listen)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = make_app(opts)
    uvicorn.run(app, host=host, port=port, log_level=opts.log_level,
                access_log=opts.log_level in ("info", "debug", "trace"), timeout_keep_alive=30,
                timeout_graceful_shutdown=10)
