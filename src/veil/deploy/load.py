"""Reading a deployment document and a GitOps repository's teams file, every problem at once,
each with file:line:col and the field path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.deploy.model import Deployment, Teams
from veil.errors import ManifestError, Problem, ProblemCollector
from veil.manifest.load import Positions, parse_yaml, plain, read_manifest, validate

__all__ = ["LoadedDeployment", "load_deployment", "load_teams", "parse_deployment"]

TEAMS_FILE = "teams.yaml"


@dataclass(frozen=True)
class LoadedDeployment:
    model: Deployment
    file: str
    positions: Positions | None  # None for a request body
    base_dir: Path  # where relative paths (`code`, `chart.path`) start
    confined: bool = False  # paths must stay inside base_dir (a request from the network)

    def path(self, rel: str) -> Path | None:
        """`rel` resolved against base_dir; None when a confined deployment's path leaves it."""
        path = (self.base_dir / rel).resolve()
        if self.confined and path != self.base_dir and self.base_dir not in path.parents:
            return None
        return path

    def problem(self, message: str, path: tuple[str | int, ...], **kw: Any) -> Problem:
        """A problem pointing at `path` in the document (its line when it came from a file)."""
        if self.positions is not None:
            return self.positions.problem(message, path, **kw)
        from veil.manifest.load import format_path

        return Problem(message, file=self.file, path=format_path(path), **kw)


def _load(text: str, file: str, cls: type[Any], what: str) -> tuple[Any, Positions]:
    tree = parse_yaml(text, file)
    pos = Positions(file, tree)
    col = ProblemCollector(file=file)
    if not isinstance(tree, dict):
        col.add(f"a {what} is a YAML mapping", line=1, column=1,
                value=None if tree is None else plain(tree))
        col.raise_if_errors(summary=f"{file} is not a {what}")
    model = validate(cls, tree, pos, col)
    n = len(col.errors)
    col.raise_if_errors(summary=f"{n} error{'s' if n != 1 else ''} in {file}")
    return model, pos


def load_deployment(path: Path, text: str | None = None) -> LoadedDeployment:
    file = str(path)
    if text is None:
        text = read_manifest(path)
    model, pos = _load(text, file, Deployment, "deployment")
    base = Path.cwd() if file in ("-", "<stdin>") else Path(path).resolve().parent
    return LoadedDeployment(model, file, pos, base)


def parse_deployment(data: Deployment, *, base_dir: Path, file: str = "request") -> \
        LoadedDeployment:
    """A deployment that arrived already validated (a request body): its paths may not leave
    `base_dir`."""
    return LoadedDeployment(data, file, None, base_dir.resolve(), confined=True)


def load_teams(gitops_dir: Path) -> tuple[Teams, Positions]:
    path = gitops_dir / TEAMS_FILE
    if not path.is_file():
        raise ManifestError([Problem(
            "the GitOps repository has no teams file", file=str(path),
            allowed="a teams.yaml at its top: `teams: [{name: TEAM}]`, written by the "
            "platform's admins")], summary=f"no {TEAMS_FILE} in {gitops_dir}")
    model, pos = _load(read_manifest(path), str(path), Teams, "teams file")
    return model, pos
