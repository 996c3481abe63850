"""The API without builds running (no workers): what a request must look like, and every
refusal a 4xx naming the field and the rule, never a 500, never the value sent back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.platform.conftest import request
from veil.platform.app import Platform, create_app
from veil.platform.sealing import Sealer
from veil.platform.store import JobStore, make_engine

SHA = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hunter2-do-not-echo"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'p.db'}"))
    platform = Platform(store, Sealer.from_file(tmp_path / "key"), pool=None)
    with TestClient(create_app(platform)) as client:
        yield client


def body(**over: Any) -> dict[str, Any]:
    over.setdefault("registries", ["registry.example.com:5000"])
    return request("https://git.example.com/pcdst/blacklodge_containers.git", SHA, **over)


def test_a_valid_request_is_queued_with_a_location(api: TestClient) -> None:
    r = api.post("/containerbuild", json=body())
    assert r.status_code == 202
    build_id = r.json()["id"]
    assert r.headers["Location"] == f"/builds/{build_id}"
    b = api.get(f"/builds/{build_id}").json()
    assert (b["status"], b["namespace"], b["image_name"]) == ("queued", "team-a", "team-a/app")
    assert api.get("/builds", params={"namespace": "team-a"}).json()[0]["id"] == build_id
    assert api.get("/builds", params={"namespace": "other"}).json() == []


def test_only_the_seeds_thirteen_fields(api: TestClient) -> None:
    r = api.post("/containerbuild", json=body(colour="blue", timeout=5))
    assert r.status_code == 422
    paths = {p["path"] for p in r.json()["detail"]["problems"]}
    assert paths == {"body.colour", "body.timeout"}
    missing = body()
    del missing["namespace"]
    r = api.post("/containerbuild", json=missing)
    assert r.status_code == 422 and "body.namespace" in r.json()["detail"]["reason"]
    defaults = body()
    for optional in ("image_tags", "registries", "build_args", "git_fetch_depth"):
        del defaults[optional]
    assert api.post("/containerbuild", json=defaults).status_code == 202


@pytest.mark.parametrize(("field", "value", "says"), [
    ("repository", "file:///srv/git/secret.git", "git URL over https://"),
    ("repository", "/srv/git/secret.git", "no local paths"),
    ("repository", "ext::sh -c touch% /tmp/pwned", "ext::"),
    ("repository", "--upload-pack=touch /tmp/pwned", "git URL"),
    ("repository", "ssh://git@example.com/x.git", "ssh"),
    ("git_branch", "--orphan", "branch name"),
    ("git_branch", "main..evil", "without .."),
    ("git_commit_sha", "HEAD", "full commit id"),
    ("git_commit_sha", "0123abc", "full commit id"),
    ("dockerfile_path", "../../etc/passwd", "no `..`"),
    ("dockerfile_path", "/etc/passwd", "not absolute"),
    ("docker_context", "ctx/../../..", "no `..`"),
    ("docker_context", "/", "not absolute"),
    ("image_name", "Team/App", "repository path"),
    ("image_name", "127.0.0.1:5000/app:1", "without registry or tag"),
    ("image_tags", ["-rm"], "image_tags[0]"),
    ("registries", ["not a registry"], "registries[0]"),
    ("namespace", "Team_A", "namespace name"),
    ("injected_aws_role_arn", "arn:aws:iam::1:role/x", "IAM role ARN"),
    ("injected_aws_account_short_alias", "Team A", "short alias"),
    ("build_args", {"A B": "x"}, "not an ARG name"),
    ("build_args", {"X": "a\u0000b"}, "NUL"),
    ("build_args", {"X": "1", "secret:X": "2"}, "given twice"),
    ("build_args", {"CUSTOMER_REPOSITORY": "file:///etc"}, "go together"),
    ("build_args", {"CUSTOMER_REPOSITORY": "file:///etc", "CUSTOMER_COMMIT_SHA": SHA},
     "CUSTOMER_REPOSITORY must be a git URL"),
    ("git_fetch_depth", 0, "greater than or equal to 1"),
    ("git_fetch_depth", "1", "valid integer"),
    ("git_fetch_depth", 10**9, "less than or equal"),
])
def test_a_malformed_field_is_a_422_naming_it(
    api: TestClient, field: str, value: object, says: str
) -> None:
    b = body(**{field: value})
    b["build_args"] = {**b["build_args"], "secret:TOKEN": SECRET}
    r = api.post("/containerbuild", json=b)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert says in detail["reason"]
    assert any(p["path"] in (f"body.{field}", "body") for p in detail["problems"])
    assert SECRET not in r.text and "pwned" not in r.text
    assert api.get("/builds").json() == []  # nothing queued


@pytest.mark.parametrize(("headers", "content", "status"), [
    ({"Content-Type": "text/plain"}, b"{}", 415),
    ({"Content-Type": "application/json"}, b"{not json", 422),
    ({"Content-Type": "application/json"}, b" " * (2 << 20) + b"{}", 413),
    ({"Content-Type": "application/json"}, b"null", 422),
], ids=["text", "not-json", "too-large", "null"])
def test_bodies_that_are_not_a_request(
    api: TestClient, headers: dict[str, str], content: bytes, status: int
) -> None:
    r = api.post("/containerbuild", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["detail"]["reason"]


def test_secret_build_args_are_stored_sealed_and_shown_by_name(
    api: TestClient, tmp_path: Path
) -> None:
    r = api.post("/containerbuild", json=body(build_args={"secret:TOKEN": SECRET, "A": "1"}))
    b = api.get(f"/builds/{r.json()['id']}").json()
    assert b["request"]["build_args"] == {"secret:TOKEN": "(secret)", "A": "1"}
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f


def test_cancel_unknown_and_finished_builds(api: TestClient) -> None:
    build_id = api.post("/containerbuild", json=body()).json()["id"]
    r = api.post(f"/builds/{build_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    r = api.post(f"/builds/{build_id}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]["reason"]
    assert api.get("/builds/" + "0" * 32).status_code == 404
    assert api.get("/builds/../../etc/passwd").status_code == 404
    assert api.get("/builds/not-an-id").status_code == 422
    logs = api.get(f"/builds/{build_id}/logs")
    assert logs.status_code == 200 and logs.text == ""


def test_the_wrapper_repository_is_read_only(api: TestClient) -> None:
    assert api.get("/wrappers").status_code == 404  # this app serves none
    assert api.post("/git/wrappers.git/git-receive-pack", content=b"").status_code == 404


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(body())), value=_json, extra=st.booleans())
def test_any_value_in_any_field_is_an_answer_not_a_crash(
    api: TestClient, field: str, value: object, extra: bool
) -> None:
    b = body()
    if extra:
        b["x-" + field] = value
    else:
        b[field] = value
    r = api.post("/containerbuild", json=b)
    assert r.status_code in (202, 422), r.text
    if r.status_code == 422:
        assert r.json()["detail"]["reason"]


def test_logs_as_server_sent_events_resume_after_the_last_id(api: TestClient) -> None:
    build_id = api.post("/containerbuild", json=body()).json()["id"]
    store = api.app.state.platform.store  # type: ignore[attr-defined]
    row = store.claim("test:1:x")
    assert row is not None and row.id == build_id
    for seq, text in enumerate(["one\n", "two\nthree\n", "four\n"]):
        store.append_log(build_id, seq, text)
    store.finish(build_id, "test:1:x", "failed", error="no")
    r = api.get(f"/builds/{build_id}/logs",
                headers={"Accept": "text/event-stream", "Last-Event-ID": "0"})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text == ("id: 1\ndata: two\ndata: three\n\nid: 2\ndata: four\n\n"
                      "event: end\nid: 3\ndata: failed\n\n")
    assert api.get(f"/builds/{build_id}/logs").text == "one\ntwo\nthree\nfour\n"
