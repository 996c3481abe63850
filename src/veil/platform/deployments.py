"""`POST /deployments` and friends: the deploy use case over HTTP, as a FastAPI router.

    POST /deployments                   check, then commit the Argo CD applications (201; 200
                                        when the repository already holds the deployment)
    POST /deployments/check             the pre-deploy report, nothing written
    GET  /deployments/{app}/history     the app's deployments, newest first
    POST /deployments/{app}/rollback    back to the previous image

The body is the deployment document of `veil deploy -f` (`veil.deploy.model.Deployment`), so
the OpenAPI schema documents it. Paths in a request (`code`, `chart.path`) are confined to the
configured deployments folder: a client cannot make the service read, or copy into the GitOps
repository, any other file of the server. Errors have one shape, `{"detail", "problems"}`:
422 failed checks or bad input, 404 unknown app, 409 the repository is not ready or the push
was refused, 502 a registry or git failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from veil.deploy.apply import PredeployFailed, check, deploy
from veil.deploy.checks import BuildRecord, BuildRecords
from veil.deploy.gitops import GitOpsRepo, PushRejected, RepositoryNotReady
from veil.deploy.history import UnknownApp, history, rollback
from veil.deploy.images import Images, RegistryImages
from veil.deploy.load import parse_deployment
from veil.deploy.model import Deployment
from veil.deploy.report import problem_json, report_json
from veil.errors import ManifestError, UserError, VeilError
from veil.platform.store import JobStore

__all__ = ["DeploymentSettings", "StoreRecords", "deployments_router"]


class StoreRecords:
    """The build service's job store as build records: `build: ID` in a deployment."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def get(self, build_id: str) -> BuildRecord | None:
        if not re.fullmatch(r"[0-9a-f]{32}", build_id):
            return None
        row = self.store.get(build_id)
        if row is None:
            return None
        role = row.request.get("injected_aws_role_arn") or None
        return BuildRecord(tuple(row.images), row.status, role)


@dataclass(frozen=True)
class DeploymentSettings:
    gitops: Path  # the GitOps working copy the service commits to
    deployments_dir: Path  # where request paths (code, chart.path) are resolved, confined
    repo_url: str | None = None
    images: Callable[[], Images] = RegistryImages
    records: BuildRecords | None = None


def _error(err: VeilError) -> JSONResponse:
    if isinstance(err, PredeployFailed):
        body: dict[str, Any] = {"detail": err.message, "report": report_json(err.report)}
        return JSONResponse(body, status_code=422)
    problems = [problem_json(p) for p in err.problems] if isinstance(err, ManifestError) else []
    body = {"detail": err.message, "hint": err.hint, "problems": problems}
    if isinstance(err, RepositoryNotReady | PushRejected):
        return JSONResponse(body, status_code=409)
    if isinstance(err, UnknownApp):
        return JSONResponse(body, status_code=404)
    if isinstance(err, UserError):
        return JSONResponse(body, status_code=422)
    return JSONResponse(body, status_code=502)


def _close(images: Images) -> None:
    close = getattr(images, "close", None)
    if close is not None:
        close()


def deployments_router(settings: DeploymentSettings) -> APIRouter:
    router = APIRouter(prefix="/deployments", tags=["deployments"])

    def repo() -> GitOpsRepo:
        return GitOpsRepo(settings.gitops)

    @router.post("", status_code=201, summary="Deploy: check, then commit the Argo CD "
                 "applications to the GitOps repository")
    def create(body: Deployment) -> Any:
        loaded = parse_deployment(body, base_dir=settings.deployments_dir)
        images = settings.images()
        try:
            done = deploy(loaded, repo(), images, records=settings.records,
                          repo_url=settings.repo_url)
        except VeilError as err:
            return _error(err)
        finally:
            _close(images)
        commit = done.commit
        out = {
            "application": done.application,
            "changed": commit is not None,
            "commit": commit.sha if commit else None,
            "message": commit.message if commit else None,
            "files": list(commit.files) if commit else [],
            "pushed_to": commit.pushed_to if commit else None,
            "report": report_json(done.report),
        }
        return out if commit is not None else JSONResponse(out, status_code=200)

    @router.post("/check", summary="The pre-deploy checks only; nothing is written")
    def predeploy(body: Deployment) -> Any:
        loaded = parse_deployment(body, base_dir=settings.deployments_dir)
        images = settings.images()
        try:
            return report_json(check(loaded, images, repo=repo(), records=settings.records))
        except VeilError as err:
            return _error(err)
        finally:
            _close(images)

    @router.get("/{app}/history", summary="The app's deployments, newest first")
    def app_history(app: str, team: str | None = Query(None)) -> Any:
        try:
            return [{"commit": r.sha, "date": r.date, "image": r.image, "change": r.subject}
                    for r in history(repo(), app, team)]
        except VeilError as err:
            return _error(err)

    @router.post("/{app}/rollback", summary="Back to the app's previous image, in one commit")
    def app_rollback(app: str, team: str | None = Query(None)) -> Any:
        images = settings.images()
        try:
            commit = rollback(repo(), app, images, team)
        except VeilError as err:
            return _error(err)
        finally:
            _close(images)
        return {"commit": commit.sha, "message": commit.message, "files": list(commit.files),
                "pushed_to": commit.pushed_to}

    return router
