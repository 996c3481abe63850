"""`veil deploy history` and `veil deploy rollback`, from the GitOps repository's git log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import git
from tests.deploy.world import World, make_world
from veil.deploy.gitops import GitOpsRepo
from veil.deploy.history import UnknownApp, history, rollback
from veil.deploy.images import MemoryImages, RegistryImages
from veil.errors import UserError

pytestmark = pytest.mark.integration
pytest.importorskip("helm_python")


@pytest.fixture
def world(tmp_path: Path, registry: str) -> World:
    return make_world(tmp_path, registry)


def test_rollback_restores_the_previous_image_in_one_pushed_commit(world: World) -> None:
    ref1, d1 = world.image("1")
    ref2, d2 = world.image("2")
    world.deploy(world.deployment(image=f"{ref1}@{d1}", env={"MODEL_URL": "s3://v1"}))
    world.deploy(world.deployment(image=f"{ref2}@{d2}", env={"MODEL_URL": "s3://v2"}))
    repo = GitOpsRepo(world.repo)
    revs = history(repo, "fraud-v1")
    assert [r.image for r in revs] == [f"{ref2}@{d2}", f"{ref1}@{d1}"]
    old_text = repo.show(revs[1].sha, "teams/ml/apps/fraud-v1.yaml")

    head = git(world.repo, "rev-parse", "HEAD").strip()
    with RegistryImages() as images:
        commit = rollback(repo, "fraud-v1", images)
    assert git(world.repo, "rev-parse", "HEAD~1").strip() == head
    assert commit.files == ("teams/ml/apps/fraud-v1.yaml",)
    assert commit.pushed_to == "origin/main"
    assert commit.message.startswith(f"rollback ml/fraud-v1: image {ref1}@{d1} "
                                     f"(was {ref2}@{d2})")
    # the Application as it was with that image: its env too
    assert (world.repo / "teams/ml/apps/fraud-v1.yaml").read_text() == old_text
    assert history(repo, "fraud-v1")[0].image == f"{ref1}@{d1}"


def test_rollback_with_nothing_earlier_or_an_unknown_app(world: World) -> None:
    ref, d = world.image("1")
    world.deploy(world.deployment(image=f"{ref}@{d}"))
    repo = GitOpsRepo(world.repo)
    before = world.snapshot()
    with pytest.raises(UserError, match="no earlier image"):
        rollback(repo, "fraud-v1", MemoryImages())
    with pytest.raises(UnknownApp):
        rollback(repo, "nope", MemoryImages())
    with pytest.raises(UnknownApp):
        history(repo, "fraud-v1", team="web")
    assert world.snapshot() == before


def test_rollback_refuses_an_image_the_registry_no_longer_has(world: World) -> None:
    ref1, d1 = world.image("1")
    ref2, d2 = world.image("2")
    world.deploy(world.deployment(image=f"{ref1}@{d1}"))
    world.deploy(world.deployment(image=f"{ref2}@{d2}"))
    before = world.snapshot()
    # a registry that lost the old image (the real one does not delete by default)
    images = MemoryImages()
    images.add(f"{ref2}", d2)
    with pytest.raises(UserError, match="cannot roll back ml/fraud-v1"):
        rollback(GitOpsRepo(world.repo), "fraud-v1", images)
    assert world.snapshot() == before


def test_an_app_name_two_teams_use_needs_the_team(world: World) -> None:
    ref, d = world.image("1")
    world.deploy(world.deployment(image=f"{ref}@{d}"))
    world.deploy(world.deployment(team="web", image=f"{ref}@{d}"))
    with pytest.raises(UserError, match="teams ml, web each have an app") as info:
        history(GitOpsRepo(world.repo), "fraud-v1")
    assert info.value.hint == "say which with --team"
    assert len(history(GitOpsRepo(world.repo), "fraud-v1", team="web")) == 1
