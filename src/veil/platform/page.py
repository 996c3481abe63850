"""The page at `/`: builds with status, namespace, image, digests per registry, duration and the
reason of a failure, and the live log of the selected (or newest running) build.

Server-rendered with jinja2 (autoescaped: build args, errors and logs are user text). The table
is re-rendered by the server every second (`/ui/builds`, swapped in by a few lines of plain
script); the log follows `/builds/{id}/logs` as Server-Sent Events. No front-end toolchain.
"""

from __future__ import annotations

import time
from typing import Annotated

import jinja2
from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from veil.platform.store import BuildRow, JobStore

__all__ = ["install"]

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("veil.platform", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def _duration(row: BuildRow) -> str:
    d = row.duration
    if d is None:
        return ""
    return f"{d:.1f} s" if d < 120 else f"{d / 60:.1f} min"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else ""


_env.filters["duration"] = _duration
_env.filters["when"] = _when


def _selected(rows: list[BuildRow], build: str | None) -> BuildRow | None:
    if build:
        return next((r for r in rows if r.id == build), None)
    return next((r for r in rows if r.status == "running"), rows[0] if rows else None)


def install(app: FastAPI, store: JobStore) -> None:
    Namespace = Annotated[str | None, Query(max_length=63)]
    Build = Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(namespace: Namespace = None, build: Build = None) -> HTMLResponse:
        rows = await run_in_threadpool(store.list_builds, namespace, None, 200)
        selected = _selected(rows, build)
        if build and selected is None:
            selected = await run_in_threadpool(store.get, build)
        html = _env.get_template("index.html.j2").render(
            rows=rows, selected=selected, namespace=namespace or "", pinned=bool(build))
        return HTMLResponse(html)

    @app.get("/ui/builds", response_class=HTMLResponse, include_in_schema=False)
    async def table(namespace: Namespace = None, build: Build = None) -> HTMLResponse:
        rows = await run_in_threadpool(store.list_builds, namespace, None, 200)
        selected = _selected(rows, build)
        html = _env.get_template("builds.html.j2").render(rows=rows, selected=selected)
        return HTMLResponse(html)
