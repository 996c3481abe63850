"""Fetching a repository at one commit of one branch, shallow first, deeper only when needed.

git runs with the transports restricted to http, https and git (`GIT_ALLOW_PROTOCOL`, which
redirects obey too), without the system's or user's configuration and without prompting for
credentials, so a request cannot make it read local repositories or run commands.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from veil.platform.job import BuildFailed, Job

__all__ = ["fetch", "git_env"]

_MAX_DEEPEN_ROUNDS = 16


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_ALLOW_PROTOCOL="http:https:git",
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ASKPASS="true",
        HOME=tempfile.gettempdir(),
    )
    return env


def fetch(job: Job, url: str, branch: str, commit: str, depth: int, dest: Path,
          what: str = "repository") -> None:
    """Check `commit` of `url`'s `branch` out into `dest` (a new folder)."""
    env = git_env()
    git = ["git", "-C", str(dest), "-c", "advice.detachedHead=false",
           "-c", "core.hooksPath=/dev/null"]
    dest.mkdir(parents=True)
    job.run(["git", "init", "-q", str(dest)], what="git init failed", env=env, quiet=True)
    remote = f"refs/remotes/origin/{branch}"
    job.step(f"fetching branch {branch} of the {what} {url} (depth {depth})")
    job.run([*git, "fetch", "--no-tags", "--progress", f"--depth={depth}", "--", url,
             f"+refs/heads/{branch}:{remote}"],
            what=f"fetching branch {branch} of the {what} {url} failed", env=env,
            hint="check that the repository URL is right and reachable from the platform, and "
            "that the branch exists")
    step = depth
    rounds = 0
    while not job.ok([*git, "cat-file", "-e", f"{commit}^{{commit}}"], env=env):
        shallow = (dest / ".git" / "shallow").exists()
        if not shallow or rounds >= _MAX_DEEPEN_ROUNDS:
            raise BuildFailed(
                f"the commit {commit} is not on branch {branch} of the {what} {url} "
                f"(searched {'its whole history' if not shallow else f'{step} commits deep'})")
        rounds += 1
        job.step(f"{commit[:12]} is further back than {step} commits: fetching {step} more")
        job.run([*git, "fetch", "--no-tags", f"--deepen={step}", "--", url,
                 f"+refs/heads/{branch}:{remote}"],
                what=f"deepening the history of {url} failed", env=env)
        step *= 2
    if not job.ok([*git, "merge-base", "--is-ancestor", commit, remote], env=env):
        raise BuildFailed(f"the commit {commit} is not on branch {branch} of the {what} {url}")
    job.run([*git, "checkout", "-q", "--detach", commit],
            what=f"checking out {commit} failed", env=env)
