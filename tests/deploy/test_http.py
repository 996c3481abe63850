"""`POST /deployments` and friends: the router in a FastAPI app served by uvicorn on a free
loopback port; the same model as the CLI."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.conftest import free_port
from tests.deploy.world import CODE, World, make_world
from veil.platform.deployments import DeploymentSettings, deployments_router

pytestmark = pytest.mark.integration
pytest.importorskip("helm_python")


@pytest.fixture
def world(tmp_path: Path, registry: str) -> World:
    return make_world(tmp_path, registry)


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    folder = world.tmp / "deployments"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "model.py").write_text(CODE)
    app = FastAPI()
    app.include_router(deployments_router(DeploymentSettings(world.repo, folder)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        yield c
    server.should_exit = True
    thread.join(timeout=10)


def _body(world: World, **fields: Any) -> dict[str, Any]:
    ref, digest = world.image("1")
    body: dict[str, Any] = {"team": "ml", "app": "fraud-v1", "image": f"{ref}@{digest}",
                            "chart": {"wrapper": "flask"}, "code": "code", "alias": "fraud",
                            "env": {"MODEL_URL": "s3://m"}}
    body.update(fields)
    return body


def test_post_deploys_then_reports_unchanged(world: World, client: httpx.Client) -> None:
    body = _body(world)
    resp = client.post("/deployments", json=body)
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert out["application"] == "ml--fraud-v1" and out["pushed_to"] == "origin/main"
    assert "teams/ml/apps/fraud-v1.yaml" in out["files"]
    assert out["report"]["ok"] is True
    assert any(w["path"] == "env" and "THRESHOLD" in w["message"]
               for w in out["report"]["warnings"])
    again = client.post("/deployments", json=body)
    assert again.status_code == 200 and again.json()["changed"] is False

    hist = client.get("/deployments/fraud-v1/history")
    assert hist.status_code == 200 and hist.json()[0]["image"] == body["image"]
    assert client.get("/deployments/nope/history").status_code == 404
    assert client.post("/deployments/fraud-v1/rollback").status_code == 422  # nothing earlier


def test_bad_bodies_and_failed_checks_are_422_and_write_nothing(
        world: World, client: httpx.Client) -> None:
    before = world.snapshot()
    resp = client.post("/deployments", json=_body(world, valuez={}, chart={"wrapper": "x"}))
    assert resp.status_code == 422
    locs = {tuple(e["loc"]) for e in resp.json()["detail"]}
    assert ("body", "valuez") in locs and ("body", "chart", "wrapper") in locs

    resp = client.post("/deployments", json=_body(world, team="nobody", env={}))
    assert resp.status_code == 422
    report = resp.json()["report"]
    assert {e["path"] for e in report["errors"]} == {"team", "env"}
    assert world.snapshot() == before


@pytest.mark.parametrize("field", ["code", "chart"])
def test_request_paths_cannot_leave_the_deployments_folder(
        world: World, client: httpx.Client, field: str) -> None:
    secret = world.tmp / "server-only"
    secret.mkdir()
    (secret / "Chart.yaml").write_text("apiVersion: v2\nname: s\nversion: 0.1.0\n")
    (secret / "keys.py").write_text("import os\nos.environ['SERVER_SECRET_NAME']\n")
    os.symlink(secret, world.tmp / "deployments" / "link")
    before = world.snapshot()
    for path in (str(secret), "../server-only", "link"):
        value: Any = {"path": path} if field == "chart" else path
        extra: dict[str, Any] = {"env": {}, "code": None} if field == "chart" else {}
        resp = client.post("/deployments", json=_body(world, **{field: value, **extra}))
        assert resp.status_code == 422, resp.text
        errors = resp.json()["report"]["errors"]
        assert any("leaves the deployments folder" in e["message"] for e in errors)
        assert "SERVER_SECRET_NAME" not in resp.text
    assert world.snapshot() == before


def test_a_dirty_repository_is_409(world: World, client: httpx.Client) -> None:
    (world.repo / "scratch.txt").write_text("mine")
    resp = client.post("/deployments", json=_body(world))
    assert resp.status_code == 409
    assert "uncommitted changes: scratch.txt" in resp.json()["detail"]


def test_the_openapi_schema_documents_the_deployment_model(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/deployments" in spec["paths"]
    schema = spec["components"]["schemas"]["Deployment"]
    assert {"team", "app", "image", "build", "chart", "env", "values", "sidecars", "alias",
            "cluster", "serviceAccount"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_platform_serve_with_a_gitops_repository_serves_deployments(
        world: World, tmp_path: Path) -> None:
    from veil.platform.server import ServeOptions, make_app

    without = make_app(ServeOptions(state_dir=tmp_path / "state-a"))
    assert "/deployments" not in without.openapi()["paths"]
    app = make_app(ServeOptions(state_dir=tmp_path / "state-b", gitops=world.repo))
    paths = app.openapi()["paths"]
    assert {"/deployments", "/deployments/check", "/deployments/{app}/history",
            "/deployments/{app}/rollback", "/containerbuild"} <= set(paths)
