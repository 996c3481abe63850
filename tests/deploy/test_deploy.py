"""`deploy`: a real registry, real git (with a bare remote to push to), Helm's engine.

Every refusal leaves the GitOps repository exactly as it was: HEAD, every file, the remote."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.deploy.support import ROLE, git
from tests.deploy.world import World, make_world, mesh_like_chart
from veil.deploy.apply import PredeployFailed
from veil.deploy.gitops import PushRejected, RepositoryNotReady
from veil.deploy.render import pulled_images, render_chart
from veil.deploy.schema import validate_object
from veil.errors import OperationalError, UserError

pytestmark = pytest.mark.integration
helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")


@pytest.fixture
def world(tmp_path: Path, registry: str) -> World:
    return make_world(tmp_path, registry)


def test_deploy_writes_validated_applications_in_one_pushed_commit(world: World) -> None:
    ref, digest = world.image("1")
    side, side_digest = world.image("2", name="logship")
    path = world.deployment(image=f"{ref}@{digest}", code=world.code(), alias="fraud",
                            sidecars=[{"name": "logship", "image": side}])
    before = world.snapshot()
    done = world.deploy(path)
    assert done.commit is not None and done.commit.pushed_to == "origin/main"
    head, _, remote = world.snapshot()
    assert git(world.repo, "rev-list", "--count", f"{before[0]}..HEAD").strip() == "1"
    assert remote == head  # pushed
    message = git(world.repo, "log", "-1", "--format=%B")
    assert message.startswith(f"deploy ml/fraud-v1: image {ref}@{digest}")
    assert "alias fraud → fraud-v1" in message
    assert "team ml: AppProject and namespace Application created" in message

    app = world.load("teams/ml/apps/fraud-v1.yaml")
    for rel in ("teams/ml/apps/fraud-v1.yaml", "teams/ml/aliases/fraud.yaml",
                "teams/ml/project.yaml", "teams/ml/namespace.yaml"):
        assert validate_object(world.load(rel), file=rel) == []
    values = app["spec"]["source"]["helm"]["valuesObject"]
    assert values["image"] == {"repository": ref.rsplit(":", 1)[0], "tag": "1",
                               "digest": digest}
    assert values["serviceAccount"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    assert app["spec"]["source"]["repoURL"] == str(world.remote)
    assert app["spec"]["project"] == "ml"
    # what Argo CD would render from the repository: pinned images, the role, all valid
    objects = render_chart(world.repo / app["spec"]["source"]["path"], values,
                           release="fraud-v1", namespace="ml")
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    assert {img for _, _, img in pulled_images(objects)} == {
        f"{ref.rsplit(':', 1)[0]}@{digest}", f"{side.rsplit(':', 1)[0]}@{side_digest}"}
    ns = world.load("teams/ml/namespace/namespace.yaml")
    kubernetes_validate.validate(ns, "1.30.0", strict=True)


def test_same_deployment_again_commits_nothing(world: World) -> None:
    ref, digest = world.image("1")
    path = world.deployment(image=f"{ref}@{digest}")
    world.deploy(path)
    before = world.snapshot()
    assert world.deploy(path).commit is None
    assert world.snapshot() == before


def test_moving_the_alias_is_a_one_line_change(world: World) -> None:
    ref1, d1 = world.image("1")
    ref2, d2 = world.image("2")
    world.deploy(world.deployment(image=f"{ref1}@{d1}", alias="fraud"))
    world.deploy(world.deployment(app="fraud-v2", image=f"{ref2}@{d2}", alias="fraud"))
    diff = git(world.repo, "diff", "--unified=0", "HEAD~1", "HEAD", "--",
               "teams/ml/aliases/fraud.yaml")
    changed = [ln for ln in diff.splitlines()
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-        target: fraud-v1", "+        target: fraud-v2"]
    # the team's project and namespace were written once, not again
    stat = git(world.repo, "show", "--name-only", "--format=", "HEAD").split()
    assert "teams/ml/namespace.yaml" not in stat and "teams/ml/project.yaml" not in stat


def test_every_failed_check_is_listed_together_and_nothing_is_written(world: World) -> None:
    ref, digest = world.image("1", env={})
    path = world.deployment(
        team="nobody", image=f"{ref}@{digest}", code=world.code(), env={},
        sidecars=[{"name": "gone", "image": f"{world.registry}/{world.ns}/nope:1"}])
    before = world.snapshot()
    with pytest.raises(PredeployFailed) as info:
        world.deploy(path)
    text = "\n".join(p.render() for p in info.value.problems)
    assert "deployment.yaml:1:7: error at team: unknown team" in text and "allowed: ml, web" in text
    assert "sidecar gone" in text and "has no tag '1'" in text
    assert "MODEL_URL is read by model.py:2 (os.environ[...])" in text
    assert "VEIL_ENTRYPOINT is read by wrapper" in text
    assert info.value.exit_code == 2
    assert world.snapshot() == before


def test_a_tag_moved_since_the_build_is_refused(world: World) -> None:
    ref, built = world.image("1")
    _, moved = world.image("1")  # someone pushed another image under the same tag
    assert moved != built
    before = world.snapshot()
    with pytest.raises(PredeployFailed) as info:
        world.deploy(world.deployment(image=f"{ref}@{built}"))
    (problem,) = info.value.problems
    assert "moved since the build" in problem.message
    assert moved in problem.message and built in problem.message
    assert world.snapshot() == before


def test_a_chart_that_does_not_render_is_refused(world: World) -> None:
    ref, digest = world.image("1")
    chart = world.tmp / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "x.yaml").write_text("{{ .Values.nope.deeper }}\n")
    before = world.snapshot()
    with pytest.raises(PredeployFailed, match="2 pre-deploy checks") as info:
        world.deploy(world.deployment(team="nobody", image=f"{ref}@{digest}",
                                      chart={"path": "./chart"}, env={}))
    # reported together with the other failures, not after them
    assert sorted(p.path for p in info.value.problems) == ["chart", "team"]
    assert any("does not render" in p.message and "nope" in p.message
               for p in info.value.problems)
    assert world.snapshot() == before


def _pinned(ref: str, digest: str) -> str:
    return f"{ref.rsplit(':', 1)[0]}@{digest}"


def test_a_chart_folder_deploys_with_its_own_pinned_images(world: World) -> None:
    ref, digest = world.image("1")
    other, other_digest = world.image("3", name="cache")
    mesh_like_chart(world.tmp / "chart", {"api": _pinned(ref, digest),
                                          "cache": _pinned(other, other_digest)})
    done = world.deploy(world.deployment(image=f"{ref}@{digest}", chart={"path": "./chart"},
                                         env={}, values={"api": {"replicas": 2}}))
    assert done.commit is not None
    app = world.load("teams/ml/apps/fraud-v1.yaml")
    assert app["spec"]["source"]["path"] == "teams/ml/charts/fraud-v1"
    values = app["spec"]["source"]["helm"]["valuesObject"]
    # the role reaches every subchart's ServiceAccount; the chart's images are left alone
    for service in ("api", "cache"):
        assert values[service]["serviceAccount"]["annotations"] == {
            "eks.amazonaws.com/role-arn": ROLE}
    assert "image" not in values and values["api"]["replicas"] == 2
    copied = world.repo / "teams/ml/charts/fraud-v1"
    assert (copied / "charts/cache/templates/deployment.yaml").is_file()
    objects = render_chart(copied, values, release="fraud-v1", namespace="ml")
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


@pytest.mark.parametrize("cache", ["by-tag", "unpushed", "missing-deployed"])
def test_a_chart_folder_must_pull_pinned_pushed_images(world: World, cache: str) -> None:
    ref, digest = world.image("1")
    other, _ = world.image("3", name="cache")
    images = {"api": _pinned(ref, digest), "cache": {
        "by-tag": other,
        "unpushed": _pinned(other, "sha256:" + "0" * 64),
        "missing-deployed": _pinned(other, digest),
    }[cache]}
    if cache == "missing-deployed":
        images["api"] = other
    mesh_like_chart(world.tmp / "chart", images)
    before = world.snapshot()
    with pytest.raises(PredeployFailed) as info:
        world.deploy(world.deployment(image=f"{ref}@{digest}", chart={"path": "./chart"},
                                      env={}))
    text = "\n".join(p.message for p in info.value.problems)
    expected = {"by-tag": "by tag, which may move",
                "unpushed": "has no digest sha256:0000",
                "missing-deployed": "does not pull the deployed image"}[cache]
    assert expected in text
    assert world.snapshot() == before


def test_a_dirty_repository_is_refused_and_left_alone(world: World) -> None:
    ref, digest = world.image("1")
    (world.repo / "teams.yaml").write_text("teams:\n  - name: ml\n  - name: mine\n")
    (world.repo / "notes.txt").write_text("work in progress")
    before = world.snapshot()
    with pytest.raises(RepositoryNotReady, match=r"uncommitted changes: teams\.yaml, notes\.txt"):
        world.deploy(world.deployment(image=f"{ref}@{digest}"))
    assert world.snapshot() == before


def _reject_pushes(remote: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: deployments need a ticket' >&2\nexit 1\n")
    hook.chmod(0o755)


def test_a_rejected_push_leaves_the_repository_as_it_was(world: World) -> None:
    ref, digest = world.image("1")
    world.deploy(world.deployment(image=f"{ref}@{digest}", alias="fraud"))
    ref2, digest2 = world.image("2")
    assert world.remote is not None
    _reject_pushes(world.remote)
    before = world.snapshot()
    with pytest.raises(PushRejected, match="policy: deployments need a ticket"):
        world.deploy(world.deployment(app="fraud-v2", image=f"{ref2}@{digest2}", alias="fraud",
                                      sidecars=[]))
    assert world.snapshot() == before
    assert git(world.repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (world.repo / "teams/ml/apps/fraud-v2.yaml").exists()


def test_a_remote_that_moved_on_is_a_rejected_push(world: World, tmp_path: Path) -> None:
    ref, digest = world.image("1")
    assert world.remote is not None
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(world.remote), str(other))
    (other / "README").write_text("someone else")
    git(other, "add", "README")
    git(other, "commit", "-q", "-m", "other")
    git(other, "push", "-q", "origin", "main")
    before = world.snapshot()
    with pytest.raises(PushRejected, match=r"rejected.*fetch first") as info:
        world.deploy(world.deployment(image=f"{ref}@{digest}"))
    assert info.value.hint is not None and "git pull --rebase" in info.value.hint
    assert world.snapshot() == before


def test_without_a_remote_the_commit_stays_local(tmp_path: Path, registry: str) -> None:
    world = make_world(tmp_path, registry, remote=False)
    ref, digest = world.image("1")
    done = world.deploy(world.deployment(image=f"{ref}@{digest}"))
    assert done.commit is not None and done.commit.pushed_to is None
    app = world.load("teams/ml/apps/fraud-v1.yaml")
    assert app["spec"]["source"]["repoURL"] == world.repo.as_uri()


def test_a_role_other_than_the_builds_is_refused(world: World) -> None:
    ref, digest = world.image("1")
    other = "arn:aws:iam::123456789012:role/admin"
    with pytest.raises(PredeployFailed) as info:
        world.deploy(world.deployment(image=f"{ref}@{digest}",
                                      serviceAccount={"roleArn": other}))
    (problem,) = info.value.problems
    assert problem.path == "serviceAccount.roleArn" and problem.allowed == ROLE


def test_moving_an_alias_alone_is_a_one_line_commit(world: World) -> None:
    ref1, d1 = world.image("1")
    ref2, d2 = world.image("2")
    world.deploy(world.deployment(image=f"{ref1}@{d1}", alias="fraud"))
    world.deploy(world.deployment(app="fraud-v2", image=f"{ref2}@{d2}"))  # deployed, not live
    done = world.deploy(world.deployment(app="fraud-v2", image=f"{ref2}@{d2}", alias="fraud"))
    assert done.commit is not None and done.commit.files == ("teams/ml/aliases/fraud.yaml",)
    numstat = git(world.repo, "show", "--numstat", "--format=", "HEAD").split()
    assert numstat == ["1", "1", "teams/ml/aliases/fraud.yaml"]
    assert git(world.repo, "log", "-1", "--format=%s").startswith("deploy ml/fraud-v2: image")
    assert "alias fraud → fraud-v2 (was fraud-v1)" in git(world.repo, "log", "-1",
                                                          "--format=%b")


def test_a_chart_with_a_symbolic_link_is_not_copied(world: World) -> None:
    ref, digest = world.image("1")
    secret = world.tmp / "secret.txt"
    secret.write_text("do not publish")
    chart = mesh_like_chart(world.tmp / "chart", {"api": _pinned(ref, digest)})
    (chart / "notes.txt").symlink_to(secret)
    before = world.snapshot()
    with pytest.raises(OperationalError, match="symbolic link"):
        world.deploy(world.deployment(image=f"{ref}@{digest}", chart={"path": "./chart"},
                                      env={}))
    assert world.snapshot() == before


def test_a_refusing_commit_hook_leaves_the_repository_as_it_was(world: World) -> None:
    ref, digest = world.image("1")
    hook = world.repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = world.snapshot()
    with pytest.raises(OperationalError, match="no commits today"):
        world.deploy(world.deployment(image=f"{ref}@{digest}", alias="fraud"))
    assert world.snapshot() == before
    assert git(world.repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (world.repo / "teams").exists()


def test_concurrent_deployments_to_one_working_copy_each_get_their_commit(world: World) -> None:
    ref, digest = world.image("1")
    paths = [world.deployment(name=f"d{i}.yaml", app=f"app-{i}", image=f"{ref}@{digest}")
             for i in range(4)]
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            world.deploy(path)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    subjects = git(world.repo, "log", "--format=%s").splitlines()
    assert sorted(s.split(":")[0] for s in subjects[:4]) == [
        f"deploy ml/app-{i}" for i in range(4)]
    assert git(world.remote, "rev-parse", "main") == git(world.repo, "rev-parse", "HEAD")


def test_a_chart_with_a_binary_file_is_refused_before_writing(world: World) -> None:
    ref, digest = world.image("1")
    chart = mesh_like_chart(world.tmp / "chart", {"api": _pinned(ref, digest)})
    (chart / "files").mkdir()
    (chart / "files" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    before = world.snapshot()
    with pytest.raises(UserError, match=r"files/logo\.png is not text"):
        world.deploy(world.deployment(image=f"{ref}@{digest}", chart={"path": "./chart"},
                                      env={}))
    assert world.snapshot() == before


def test_veils_generated_mesh_chart_deploys(world: World) -> None:
    from veil.deploy.chart.files import chart_files
    from veil.deploy.chart.model import ChartSpec, Subchart

    ref, digest = world.image("1")
    other, other_digest = world.image("1", name="cache")
    spec = ChartSpec(name="mesh", release="fraud-v1", namespace="ml", subcharts=tuple(
        Subchart(service=name, repository=r.rsplit(":", 1)[0], digest=d, tag=None, port=8080,
                 cas_addr="cas.example.com:8081", cas_key=None, config_id=f"ml/{name}/{name}")
        for name, r, d in (("api", ref, digest), ("cache", other, other_digest))))
    for rel, text in chart_files(spec).items():
        (world.tmp / "helm" / rel).parent.mkdir(parents=True, exist_ok=True)
        (world.tmp / "helm" / rel).write_text(text)
    done = world.deploy(world.deployment(image=f"{ref}@{digest}", chart={"path": "./helm"},
                                         env={}))
    assert done.commit is not None
    values = world.load("teams/ml/apps/fraud-v1.yaml")["spec"]["source"]["helm"]["valuesObject"]
    objects = render_chart(world.repo / "teams/ml/charts/fraud-v1", values, release="fraud-v1",
                           namespace="ml")
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    accounts = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert len(accounts) == 2
    assert all(a["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
               for a in accounts)
    assert {img for _, _, img in pulled_images(objects)} == {
        _pinned(ref, digest), _pinned(other, other_digest)}


def test_a_detached_head_or_a_merge_in_progress_is_refused(world: World) -> None:
    ref, digest = world.image("1")
    path = world.deployment(image=f"{ref}@{digest}")
    git(world.repo, "checkout", "-q", "--detach")
    before = world.snapshot()
    with pytest.raises(RepositoryNotReady, match="HEAD is detached"):
        world.deploy(path)
    assert world.snapshot() == before
    git(world.repo, "checkout", "-q", "main")
    (world.repo / ".git" / "MERGE_HEAD").write_text(before[0] + "\n")
    with pytest.raises(RepositoryNotReady, match="merge, rebase or cherry-pick"):
        world.deploy(path)
