"""The platform's HTTP API (FastAPI): request and response types in `request.py`, the work in
`workers.py`/`build.py`, the page in `page.py`.

    POST /containerbuild           202 + Location: /builds/ID        (queued)
    GET  /builds?namespace=&status=                                  newest first
    GET  /builds/{id}                                                status, digests, error
    GET  /builds/{id}/logs         text/plain, or text/event-stream (Accept), streamed while it runs
    POST /builds/{id}/cancel
    GET  /wrappers                 the platform's wrapper repository (URL, branch, commit)
    GET|POST /git/wrappers.git/... that repository over git's smart HTTP protocol
    GET  /                         the page

Other routers (e.g. deployments) are included by `create_app(..., routers=[...])`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from veil import __version__
from veil.platform import http_errors, page
from veil.platform.request import BuildOut, BuildSubmitted, ContainerBuildRequest
from veil.platform.sealing import Sealer
from veil.platform.store import TERMINAL, BuildRow, JobStore
from veil.platform.workers import WorkerPool
from veil.platform.wrappers import REPO_NAME, WrapperRepo, http_backend

__all__ = ["Platform", "build_out", "create_app"]

BuildId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


@dataclass
class Platform:
    store: JobStore
    sealer: Sealer
    pool: WorkerPool | None
    wrappers: WrapperRepo | None = None
    public_url: str = ""


def build_out(row: BuildRow) -> BuildOut:
    return BuildOut(
        id=row.id, status=row.status, namespace=row.namespace, image_name=row.image_name,
        repository=row.request.get("repository", ""),
        git_commit_sha=row.request.get("git_commit_sha", ""), created=row.created,
        started=row.started, finished=row.finished, duration=row.duration, worker=row.worker,
        error=row.error, digests=row.digests, images=row.images,
        cancel_requested=row.cancel_requested, request=row.request,
    )


def _sse(seq: int, text: str, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    data = "".join(f"data: {line}\n" for line in text.rstrip("\n").split("\n"))
    return f"{head}id: {seq}\n{data}\n"


def create_app(platform: Platform, routers: Sequence[APIRouter] = ()) -> FastAPI:
    store = platform.store

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if platform.pool is not None:
            platform.pool.start()
        try:
            yield
        finally:
            if platform.pool is not None:
                await run_in_threadpool(platform.pool.stop)

    app = FastAPI(title="Veil platform", version=__version__, lifespan=lifespan,
                  description="Container builds (containerbuild), a shared build queue, a page "
                  "to watch them.", responses=http_errors.ERROR_RESPONSES)
    http_errors.install(app)
    app.state.platform = platform

    async def _row(build_id: str) -> BuildRow:
        row = await run_in_threadpool(store.get, build_id)
        if row is None:
            raise HTTPException(404, f"no build {build_id}")
        return row

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/containerbuild", status_code=202, response_model=BuildSubmitted)
    def containerbuild(body: ContainerBuildRequest) -> JSONResponse:
        sealed = platform.sealer.seal(body.secret_args())
        build_id = store.submit(body.public(), sealed)
        if platform.pool is not None:
            platform.pool.wake()
        location = f"/builds/{build_id}"
        return JSONResponse({"id": build_id, "status": "queued", "location": location},
                            202, headers={"Location": location})

    @app.get("/builds", response_model=list[BuildOut])
    def list_builds(
        namespace: Annotated[str | None, Query(max_length=63)] = None,
        status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|"
                                                    "cancelled)$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[BuildOut]:
        return [build_out(r) for r in store.list_builds(namespace, status, limit)]

    @app.get("/builds/{build_id}", response_model=BuildOut)
    async def get_build(build_id: BuildId) -> BuildOut:
        return build_out(await _row(build_id))

    @app.post("/builds/{build_id}/cancel", response_model=BuildOut)
    async def cancel(build_id: BuildId) -> Any:
        row = await _row(build_id)
        if row.status in TERMINAL:
            return http_errors.error(409, f"build {build_id} has already {row.status}",
                                     state=row.status)
        row = await _row(build_id) if await run_in_threadpool(store.cancel, build_id) else row
        if platform.pool is not None:
            platform.pool.wake()
        return JSONResponse(build_out(row).model_dump(), 202)

    @app.get("/builds/{build_id}/logs")
    async def logs(build_id: BuildId, request: Request, follow: bool = True) -> Response:
        """The build's log; while it runs, new lines as they come (chunked text, or SSE)."""
        await _row(build_id)
        sse = "text/event-stream" in request.headers.get("accept", "")
        last = request.headers.get("last-event-id", "")
        after = int(last) if sse and last.isdigit() else -1

        async def stream() -> AsyncIterator[str]:
            nonlocal after
            while True:
                chunks = await run_in_threadpool(store.logs, build_id, after)
                for seq, text in chunks:
                    after = seq
                    yield _sse(seq, text) if sse else text
                if chunks:
                    continue
                row = await run_in_threadpool(store.get, build_id)
                done = row is None or row.status in TERMINAL
                if done and not await run_in_threadpool(store.logs, build_id, after):
                    if sse:
                        yield _sse(after + 1, row.status if row else "gone", event="end")
                    return
                if not follow:
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.3)

        media = "text/event-stream" if sse else "text/plain; charset=utf-8"
        return StreamingResponse(stream(), media_type=media,
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/wrappers")
    def wrappers(request: Request) -> dict[str, Any]:
        repo = platform.wrappers
        if repo is None:
            raise HTTPException(404, "this platform serves no wrappers")
        base = platform.public_url or str(request.base_url).rstrip("/")
        return {"repository": f"{base}/git/{REPO_NAME}", "git_branch": repo.branch,
                "git_commit_sha": repo.commit, "dockerfiles": list(repo.dockerfiles),
                "docker_context": "."}

    @app.api_route("/git/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def git(path: str, request: Request) -> Response:
        repo = platform.wrappers
        if repo is None or not path.startswith(REPO_NAME + "/") or ".." in path:
            raise HTTPException(404, "no such repository")
        if request.method == "POST" and not path.endswith("/git-upload-pack"):
            raise HTTPException(403, "this repository is read-only")
        if request.query_params.get("service", "git-upload-pack") != "git-upload-pack":
            raise HTTPException(403, "this repository is read-only")
        body = await request.body() if request.method == "POST" else b""
        status, headers, payload = await run_in_threadpool(
            http_backend, repo.root, path, request.method, request.url.query,
            request.headers.get("content-type", ""), request.headers.get("content-encoding", ""),
            request.headers.get("git-protocol", ""), body)
        headers.pop("Content-Length", None)
        return Response(payload, status, headers=headers)

    page.install(app, store)
    for router in routers:
        app.include_router(router)
    return app
