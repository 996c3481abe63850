"""The deploy use case, shared by `veil deploy`, `veil check predeploy` and `POST /deployments`.

    check(loaded, repo, images)   → Report              (nothing written)
    deploy(loaded, repo, images)  → Deployed            (one commit, pushed; or nothing at all)

Order: the working copy must be clean; every pre-deploy check runs and all failures stop the
deployment together (exit 2); the Argo CD objects are built, validated against the CRD schemas
(strictly) and written as one commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.deploy import argo
from veil.deploy.checks import BuildRecords, Report, predeploy
from veil.deploy.envcheck import PLATFORM_ENV
from veil.deploy.gitops import Commit, GitOpsRepo
from veil.deploy.images import Images
from veil.deploy.load import LoadedDeployment, load_teams
from veil.deploy.model import Teams
from veil.deploy.render import ALIAS_CHART, bundled_chart
from veil.deploy.schema import validate_objects
from veil.errors import ManifestError, OperationalError, UserError

__all__ = ["Deployed", "PredeployFailed", "check", "deploy"]

MAX_CHART_BYTES = 2 * 1024 * 1024


class PredeployFailed(ManifestError):
    """One or more pre-deploy checks failed; nothing was written. Exit code 2."""

    def __init__(self, report: Report, file: str) -> None:
        self.report = report
        n = len(report.errors)
        super().__init__(report.problems,
                         summary=f"{n} pre-deploy check{'s' if n != 1 else ''} failed for "
                         f"{file}; nothing was written")


@dataclass(frozen=True)
class Deployed:
    report: Report
    commit: Commit | None  # None: the repository already held exactly this deployment
    application: str


def _existing(repo: GitOpsRepo, team: str) -> dict[str, set[str]]:
    base = repo.path / "teams" / team
    return {kind: {p.stem for p in (base / kind).glob("*.yaml")} for kind in ("apps", "aliases")}


def check(loaded: LoadedDeployment, images: Images, *, repo: GitOpsRepo | None = None,
          records: BuildRecords | None = None, teams: Teams | None = None,
          platform_env: Mapping[str, str] = PLATFORM_ENV) -> Report:
    existing: dict[str, set[str]] = {}
    if repo is not None:
        teams = teams or load_teams(repo.path)[0]
        existing = _existing(repo, loaded.model.team)
    if teams is not None and teams.platformEnv:
        platform_env = {**platform_env, **teams.platformEnv}
    return predeploy(loaded, images, teams=teams, existing=existing, records=records,
                     platform_env=platform_env)


def deploy(loaded: LoadedDeployment, repo: GitOpsRepo, images: Images, *,
           records: BuildRecords | None = None, repo_url: str | None = None,
           platform_env: Mapping[str, str] = PLATFORM_ENV) -> Deployed:
    dep = loaded.model
    with repo.lock():
        repo.check_clean()
        teams, _ = load_teams(repo.path)
        report = check(loaded, images, repo=repo, records=records, teams=teams,
                       platform_env=platform_env)
        if report.errors:
            raise PredeployFailed(report, loaded.file)
        team = teams.get(dep.team)
        assert team is not None  # checked
        files, objects, summary = _files(loaded, report, repo, repo_url or repo.repo_url(),
                                         team.description)
        problems = validate_objects(objects)
        if problems:  # Veil built an object Argo CD would not take: a bug, not bad input
            raise OperationalError("generated Argo CD objects fail the CRD schema: "
                                   + "; ".join(p.render() for p in problems))
        commit = repo.commit(files, _message(dep.team, dep.app, summary, files, repo))
    return Deployed(report, commit, dep.application)


def _tree(src: Path, dest: str, repo: GitOpsRepo) -> dict[str, str | None]:
    """The files of chart folder `src` as they should be at `dest` (stale files deleted)."""
    out: dict[str, str | None] = {}
    total = 0
    for path in sorted(src.rglob("*")):
        if path.is_symlink():
            raise OperationalError(f"chart {src}: {path.name} is a symbolic link",
                                   hint="a chart copied into the GitOps repository holds "
                                   "plain files only")
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise UserError(f"chart {src}: {path.relative_to(src)} is not text",
                                hint="Veil copies charts as text files into the GitOps "
                                "repository; unpack packaged subcharts (.tgz) into folders"
                                ) from None
            total += len(text)
            out[f"{dest}/{path.relative_to(src).as_posix()}"] = text
    if total > MAX_CHART_BYTES:
        raise OperationalError(f"chart {src} is larger than {MAX_CHART_BYTES:,} bytes")
    old = repo.path / dest
    if old.is_dir():
        for path in old.rglob("*"):
            rel = f"{dest}/{path.relative_to(old).as_posix()}"
            if path.is_file() and rel not in out:
                out[rel] = None
    return out


def _files(loaded: LoadedDeployment, report: Report, repo: GitOpsRepo, repo_url: str,
           description: str) -> tuple[dict[str, str | None], dict[str, dict[str, Any]],
                                      list[str]]:
    """(files to write, the Argo CD objects among them by path, what changed in words)."""
    dep = loaded.model
    assert report.image is not None and report.chart_dir is not None
    layout = argo.Layout(dep.team)
    revision = repo.branch()
    files: dict[str, str | None] = {}
    objects: dict[str, dict[str, Any]] = {}
    summary: list[str] = []

    if dep.chart.wrapper:
        chart_path = argo.WRAPPER_DIR
    else:
        chart_path = layout.chart(dep.app)
    files.update(_tree(report.chart_dir, chart_path, repo))

    image = f"{report.image.reference.name}:{report.image.reference.tag or ''}" \
        f"@{report.image.digest}".replace(":@", "@")
    app_doc = argo.deployment_application(
        team=dep.team, app=dep.app, repo_url=repo_url, revision=revision,
        chart_path=chart_path, values=report.values, cluster=dep.cluster, image=image)
    app_file = layout.app(dep.app)
    old = _annotation(repo.read(app_file))
    objects[app_file] = app_doc
    summary.append(f"image {image}" + (f" (was {old})" if old and old != image else ""))

    if dep.alias:
        files.update(_tree(bundled_chart(ALIAS_CHART), argo.ALIAS_DIR, repo))
        alias_file = layout.alias(dep.alias)
        before = _target(repo.read(alias_file))
        objects[alias_file] = argo.alias_application(
            team=dep.team, alias=dep.alias, target=dep.app, repo_url=repo_url,
            revision=revision, cluster=dep.cluster)
        if before != dep.app:
            summary.append(f"alias {dep.alias} → {dep.app}"
                           + (f" (was {before})" if before else ""))

    clusters = {dep.cluster, *_clusters(repo.read(layout.project))}
    objects[layout.project] = argo.app_project(
        team=dep.team, description=description, repo_url=repo_url, clusters=sorted(clusters))
    if repo.read(layout.project) is None:
        summary.append(f"team {dep.team}: AppProject and namespace Application created")
    if repo.read(layout.namespace_app) is None:
        objects[layout.namespace_app] = argo.namespace_application(
            team=dep.team, repo_url=repo_url, revision=revision, path=layout.namespace_dir,
            cluster=dep.cluster)
        files[f"{layout.namespace_dir}/namespace.yaml"] = argo.dump(
            argo.namespace_manifest(dep.team))
    files.update({path: argo.dump(obj) for path, obj in objects.items()})
    return files, objects, summary


def _annotation(text: str | None) -> str | None:
    doc = argo.load(text)
    try:
        return str(doc["metadata"]["annotations"][argo.IMAGE_ANNOTATION])
    except (TypeError, KeyError):
        return None


def _target(text: str | None) -> str | None:
    doc = argo.load(text)
    try:
        return str(doc["spec"]["source"]["helm"]["valuesObject"]["target"])
    except (TypeError, KeyError):
        return None


def _clusters(text: str | None) -> list[str]:
    doc = argo.load(text)
    try:
        return [d.get("server") or d["name"] for d in doc["spec"]["destinations"]]
    except (TypeError, KeyError, AttributeError):
        return []


def _message(team: str, app: str, summary: list[str], files: Mapping[str, str | None],
             repo: GitOpsRepo) -> str:
    changed = sorted(p for p, t in files.items() if repo.read(p) != t)
    lines = [f"deploy {team}/{app}: {summary[0]}", ""]
    lines += summary[1:]
    if len(summary) > 1:
        lines.append("")
    lines.append("files:")
    lines += [f"  {'deleted ' if files[p] is None else ''}{p}" for p in changed]
    return "\n".join(lines) + "\n"
