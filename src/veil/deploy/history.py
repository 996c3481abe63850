"""History and rollback of a deployment, read from the GitOps repository's own git history.

Every deployment commit changes `teams/T/apps/A.yaml`, whose annotation `veil.dev/image` names
the image; `history` lists those commits, newest first. `rollback` restores the Application as
it was at the newest earlier commit with a different image — values and env included, since they
belong to that image — after checking that the registry still has that image, in one commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from veil.deploy import argo
from veil.deploy.gitops import Commit, GitOpsRepo
from veil.deploy.images import Images
from veil.errors import UserError, VeilError
from veil.image.reference import parse_reference

__all__ = ["Revision", "UnknownApp", "find_app", "history", "rollback"]


class UnknownApp(UserError):
    """No app of that name (in that team) in the GitOps repository."""


@dataclass(frozen=True)
class Revision:
    sha: str
    date: str
    image: str | None
    subject: str


def find_app(repo: GitOpsRepo, app: str, team: str | None = None) -> tuple[str, str]:
    """(team, path of the Application) of APP; a name two teams use needs --team."""
    if team is not None:
        path = argo.Layout(team).app(app)
        if repo.read(path) is None:
            raise UnknownApp(f"team {team} has no app {app!r} in {repo.path}")
        return team, path
    found = sorted(p.parts[-3] for p in repo.path.glob(f"teams/*/apps/{app}.yaml"))
    if not found:
        raise UnknownApp(f"no app {app!r} in the GitOps repository {repo.path}",
                        hint="`veil deploy -f deployment.yaml` creates it")
    if len(found) > 1:
        raise UserError(f"teams {', '.join(found)} each have an app {app!r}",
                        hint="say which with --team")
    return found[0], argo.Layout(found[0]).app(app)


def _image(text: str | None) -> str | None:
    doc: Any = argo.load(text)
    try:
        return str(doc["metadata"]["annotations"][argo.IMAGE_ANNOTATION])
    except (TypeError, KeyError):
        return None


def history(repo: GitOpsRepo, app: str, team: str | None = None) -> list[Revision]:
    _, path = find_app(repo, app, team)
    out = []
    for entry in repo.log(path):
        text = repo.show(entry.sha, path)
        if text is not None:
            out.append(Revision(entry.sha, entry.date, _image(text), entry.subject))
    return out


def rollback(repo: GitOpsRepo, app: str, images: Images, team: str | None = None) -> Commit:
    with repo.lock():
        repo.check_clean()
        team, path = find_app(repo, app, team)
        current = _image(repo.read(path))
        revisions = history(repo, app, team)
        previous = next((r for r in revisions if r.image and r.image != current), None)
        if previous is None:
            raise UserError(f"{team}/{app} has no earlier image to roll back to",
                            hint=f"`veil deploy history {app}` lists its deployments")
        assert previous.image is not None
        try:  # the registry must still hold what the old Application pins
            images.digest(parse_reference(previous.image))
        except VeilError as err:
            raise UserError(f"cannot roll back {team}/{app} to {previous.image}: {err.message}",
                            hint="the image was deleted from its registry; deploy a new "
                            "build instead") from None
        text = repo.show(previous.sha, path)
        assert text is not None
        message = (f"rollback {team}/{app}: image {previous.image} (was {current})\n\n"
                   f"restores {path} as of {previous.sha[:12]} ({previous.subject})\n")
        commit = repo.commit({path: text}, message)
        assert commit is not None  # the image differs, so the file does
        return commit
