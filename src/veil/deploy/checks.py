"""Pre-deploy checks: everything that must hold before a deployment is written, all of it
checked, every failure reported together.

1. the team is one the GitOps repository knows, the cluster one it may use, the names free;
2. the image the chart will pull is exactly the one pushed: the tag is read from the registry
   now, must still point at the digest the build pushed, and the rendered chart must pull
   `repository@digest` and nothing else but the sidecars;
3. environment by phase (see `envcheck`);
4. every sidecar image exists in its registry (its digest resolved and pinned).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from veil.deploy.chartcheck import check_chart
from veil.deploy.envcheck import PLATFORM_ENV, EnvTable, env_table
from veil.deploy.envscan import Read, scan_tree
from veil.deploy.images import ImageFacts, Images
from veil.deploy.load import LoadedDeployment
from veil.deploy.model import Team, Teams
from veil.errors import Problem, VeilError
from veil.image.reference import Reference, parse_reference
from veil.wrap.config import env_for

__all__ = ["BuildRecord", "BuildRecords", "Report", "predeploy"]



@dataclass(frozen=True)
class BuildRecord:
    """What the platform's build service recorded for one build."""

    images: tuple[str, ...]  # REGISTRY/PATH:TAG@DIGEST, every tag in every registry pushed to
    status: str = "succeeded"
    role_arn: str | None = None


class BuildRecords(Protocol):
    def get(self, build_id: str) -> BuildRecord | None: ...


@dataclass
class Report:
    """The outcome of the checks and what a deployment would write."""

    problems: list[Problem] = field(default_factory=list)
    image: ImageFacts | None = None
    sidecars: dict[str, str] = field(default_factory=dict)  # name → pinned reference
    env: EnvTable | None = None
    values: dict[str, Any] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)  # the rendered chart
    chart_dir: Path | None = None
    role_arn: str | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def predeploy(loaded: LoadedDeployment, images: Images, *, teams: Teams | None = None,
              existing: Mapping[str, set[str]] | None = None,
              records: BuildRecords | None = None,
              platform_env: Mapping[str, str] = PLATFORM_ENV) -> Report:
    """Run every check; `existing` holds the team's current {"apps": ..., "aliases": ...}."""
    dep = loaded.model
    report = Report()
    add = report.problems.append

    def problem(msg: str, path: tuple[str | int, ...], **kw: Any) -> None:
        add(loaded.problem(msg, path, **kw))

    if teams is not None:
        _team_checks(loaded, teams.get(dep.team), teams, existing or {}, problem)

    # 2. the image, as the registry has it now
    ref, expected, record_role = _image_ref(loaded, records, problem)
    if ref is not None:
        report.image = _image_facts(ref, expected, images, problem)
    # 4. sidecars
    for i, sidecar in enumerate(dep.sidecars):
        try:
            sref = parse_reference(sidecar.image)
        except VeilError as err:
            problem(err.message, ("sidecars", i, "image"))
            continue
        facts = _image_facts(sref, sref.digest, images, problem, ("sidecars", i, "image"),
                             what=f"sidecar {sidecar.name}")
        if facts is not None:
            report.sidecars[sidecar.name] = facts.pinned

    report.role_arn = _role(loaded, record_role, report.image, problem)
    # 3. environment by phase
    reads: list[Read] = []
    if dep.code is not None:
        code = loaded.path(dep.code)
        if code is None:
            problem("the path leaves the deployments folder", ("code",), value=dep.code,
                    allowed=f"a path inside {loaded.base_dir}")
        elif not code.exists():
            problem(f"no such file or folder: {code}", ("code",), value=dep.code,
                    allowed="the program's source folder (relative to the deployment file)")
        else:
            reads = scan_tree(code)
    elif dep.chart.wrapper is not None:
        problem("no `code` given: only the wrapper's own variables were checked", ("code",),
                severity="warning")
    if dep.chart.path is not None and dep.code is None:
        pass  # a chart folder's pods get their environment from the chart (or CAS), not here
    elif report.image is not None:
        _env_checks(loaded, report, reads, platform_env, problem)
    else:  # without the image's own env the table would mislead
        problem("the environment was not checked: the image could not be read", ("env",),
                severity="warning")
    for name in dep.env:
        if any(w in name.upper() for w in ("PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY")):
            problem(f"{name} looks like a credential: the GitOps repository is plain text",
                    ("env", name), severity="warning",
                    allowed="secrets from CAS (injected into the measured program), not env")

    # 2b. render the chart with the values it will get, and see what it pulls
    if report.image is not None:
        check_chart(loaded, report, images, problem)
    return report


def _env_checks(loaded: LoadedDeployment, report: Report, reads: list[Read],
                platform_env: Mapping[str, str], problem: Any) -> None:
    dep = loaded.model
    assert report.image is not None
    wrapper_env = env_for(dep.chart.wrapper) if dep.chart.wrapper else ()
    report.env = env_table(reads, wrapper_env, platform=platform_env,
                           image_env=report.image.env, deploy_env=dep.env)
    for msg in report.env.errors:
        problem(msg, ("env",))
    for msg in report.env.warnings:
        problem(msg, ("env",), severity="warning")
    for r in report.env.unknown_reads:
        report.problems.append(Problem(
            "a variable whose name is computed: it cannot be checked", file=r.file,
            line=r.line, path=r.how, severity="warning",
            allowed="a literal name, or list it in the deployment's env"))


def _team_checks(loaded: LoadedDeployment, team: Team | None, teams: Teams,
                 existing: Mapping[str, set[str]], problem: Any) -> None:
    dep = loaded.model
    if team is None:
        known = ", ".join(t.name for t in teams.teams) or "(none)"
        problem("unknown team: the GitOps repository's teams.yaml does not list it",
                ("team",), value=dep.team, allowed=known)
        return
    if team.clusters and dep.cluster not in team.clusters:
        problem(f"team {team.name} may not deploy to this cluster", ("cluster",),
                value=dep.cluster, allowed=", ".join(team.clusters))
    if dep.app in existing.get("aliases", set()):
        problem(f"{dep.app!r} is an alias of team {team.name}; an app needs another name",
                ("app",), value=dep.app)
    if dep.alias and dep.alias in existing.get("apps", set()):
        problem(f"{dep.alias!r} is an app of team {team.name}; an alias needs another name",
                ("alias",), value=dep.alias)


def _image_ref(loaded: LoadedDeployment, records: BuildRecords | None,
               problem: Any) -> tuple[Reference | None, str | None, str | None]:
    dep = loaded.model
    named = parse_reference(dep.image) if dep.image is not None else None
    if dep.build is None:
        assert named is not None  # the model requires image or build
        return named, named.digest, None
    record = records.get(dep.build) if records is not None else None
    if record is None:
        problem("unknown build" if records is not None else
                "build ids need the platform's build store (`veil platform serve`)",
                ("build",), value=dep.build,
                allowed="a build id of `veil platform serve`, or `image: REF:TAG@DIGEST`")
        return None, None, None
    if record.status != "succeeded" or not record.images:
        problem(f"the build is {record.status}, it pushed no image to deploy", ("build",),
                value=dep.build, allowed="a build that succeeded")
        return None, None, None
    pushed = [parse_reference(i) for i in record.images]
    if named is None:
        chosen = pushed[0]
    else:
        match = [p for p in pushed if p.name == named.name and named.tag in (None, p.tag)
                 and named.digest in (None, p.digest)]
        if not match:
            problem("the build did not push this image", ("image",), value=dep.image,
                    allowed=", ".join(record.images))
            return None, None, None
        chosen = match[0]
    ref = Reference(chosen.host, chosen.repository, chosen.tag, None)
    return ref, chosen.digest, record.role_arn


def _image_facts(ref: Reference, expected: str | None, images: Images, problem: Any,
                 path: tuple[str | int, ...] = ("image",), what: str = "image") -> \
        ImageFacts | None:
    try:
        if ref.tag is not None:
            facts = images.facts(Reference(ref.host, ref.repository, ref.tag, None))
            if expected is not None and facts.digest != expected:
                problem(f"the tag {ref.tag!r} of {ref.name} moved since the build: it now "
                        f"points at {facts.digest}, the build pushed {expected}", path,
                        allowed="deploy the build's digest: push it again under this tag, or "
                        "name the new digest")
                return None
            return facts
        return images.facts(ref)
    except VeilError as err:
        problem(f"{what}: {err.message}", path)
        return None


def _role(loaded: LoadedDeployment, record_role: str | None, image: ImageFacts | None,
          problem: Any) -> str | None:
    named = loaded.model.serviceAccount.roleArn
    built = record_role or (image.role_arn if image else None)
    if named and built and named != built:
        problem("the deployment names another AWS role than the build was made for",
                ("serviceAccount", "roleArn"), value=named, allowed=built)
        return None
    if not (named or built):
        problem("no AWS role (neither serviceAccount.roleArn nor the build's): the "
                "ServiceAccount gets no eks.amazonaws.com/role-arn", ("serviceAccount",),
                severity="warning")
    return named or built
