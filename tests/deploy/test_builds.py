"""`build: ID`: the image, its digest and the role from the platform's job store — and the
registry still has the last word (a tag moved since the build is refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import ROLE
from tests.deploy.world import World, make_world
from veil.deploy.apply import PredeployFailed, deploy
from veil.deploy.gitops import GitOpsRepo
from veil.deploy.images import ROLE_LABELS, RegistryImages
from veil.deploy.load import load_deployment
from veil.platform.build import LABEL_PREFIX
from veil.platform.deployments import StoreRecords
from veil.platform.store import JobStore, make_engine

pytestmark = pytest.mark.integration
pytest.importorskip("helm_python")


@pytest.fixture
def world(tmp_path: Path, registry: str) -> World:
    return make_world(tmp_path, registry)


def _finished_build(store: JobStore, images: list[str], status: str = "succeeded") -> str:
    build_id = store.submit({"namespace": "ml", "image_name": "fraud",
                             "injected_aws_role_arn": ROLE}, None)
    assert store.claim("w1") is not None
    assert store.finish(build_id, "w1", status, images=images)
    return build_id


def _deploy(world: World, records: StoreRecords, **fields: object) -> object:
    with RegistryImages() as images:
        return deploy(load_deployment(world.deployment(**fields)), GitOpsRepo(world.repo),
                      images, records=records)


def test_the_role_label_is_the_one_platform_builds_set() -> None:
    assert ROLE_LABELS[0] == LABEL_PREFIX + "aws-role-arn"


def test_a_build_id_deploys_what_the_build_pushed(world: World, tmp_path: Path) -> None:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'jobs.db'}"))
    ref, digest = world.image("1", role=None)  # the role comes from the build record
    other_ref, other_digest = world.image("1", name="mirror")
    build = _finished_build(store, [f"{ref}@{digest}", f"{other_ref}@{other_digest}"])
    records = StoreRecords(store)
    _deploy(world, records, build=build)
    app = world.load("teams/ml/apps/fraud-v1.yaml")
    values = app["spec"]["source"]["helm"]["valuesObject"]
    assert values["image"]["digest"] == digest
    assert values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
    # with `image` too: which of the build's images
    _deploy(world, records, app="fraud-mirror", build=build, image=other_ref)
    mirror = world.load("teams/ml/apps/fraud-mirror.yaml")
    assert mirror["spec"]["source"]["helm"]["valuesObject"]["image"]["digest"] == other_digest


def test_build_ids_that_cannot_be_deployed(world: World, tmp_path: Path) -> None:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'jobs.db'}"))
    records = StoreRecords(store)
    ref, digest = world.image("1")
    failed = _finished_build(store, [], status="failed")
    good = _finished_build(store, [f"{ref}@{digest}"])
    before = world.snapshot()
    cases = [
        ({"build": "0" * 32}, "unknown build"),
        ({"build": "../../etc"}, "unknown build"),
        ({"build": failed}, "the build is failed"),
        ({"build": good, "image": f"{world.registry}/elsewhere/x:1"},
         "the build did not push this image"),
    ]
    for fields, expected in cases:
        with pytest.raises(PredeployFailed) as info:
            _deploy(world, records, **fields)
        assert any(expected in p.message for p in info.value.problems), fields
    world.image("1")  # the tag moves after the build
    with pytest.raises(PredeployFailed, match="1 pre-deploy check") as info:
        _deploy(world, records, build=good)
    assert "moved since the build" in info.value.problems[0].message
    assert world.snapshot() == before


def test_the_cli_reads_build_ids_from_the_platforms_job_store(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from veil.cli import main

    db = tmp_path / "jobs.db"
    store = JobStore(make_engine(f"sqlite:///{db}"))
    ref, digest = world.image("1", role=None)
    build = _finished_build(store, [f"{ref}@{digest}"])
    path = world.deployment(build=build)
    assert main(["deploy", "-f", str(path), "--gitops", str(world.repo)]) == 2
    assert "build ids need the platform's build store" in capsys.readouterr().err
    assert main(["deploy", "-f", str(path), "--gitops", str(world.repo),
                 "--platform-db", f"sqlite:///{db}"]) == 0
    assert f"image {ref}@{digest}" in capsys.readouterr().out
