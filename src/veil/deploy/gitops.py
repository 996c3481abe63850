"""The GitOps repository: a real git working copy that Veil commits to, and pushes from.

One change is one commit, made all or nothing:

1. refuse a working copy with uncommitted changes, a detached HEAD or an operation in progress
   (its owner's work is not Veil's to commit or discard);
2. write the files, `git add`, `git commit` with a message saying what changed;
3. push the branch to its remote, when there is one.

If any step after the first fails — a write, a hook, a rejected push — the branch is reset to
the commit it had and the files Veil wrote are removed, so the working copy is exactly as it
was. A lock file inside `.git` serialises concurrent deployments to one working copy.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_text

__all__ = ["Commit", "GitOpsRepo", "LogEntry", "PushRejected", "RepositoryNotReady"]

_IDENTITY = ("-c", "user.name=Veil", "-c", "user.email=veil@localhost")


class RepositoryNotReady(UserError):
    """The working copy has changes of someone else, a detached HEAD or an operation going on."""


class PushRejected(OperationalError):
    """The remote refused the push; the local commit was undone."""


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    files: tuple[str, ...]
    pushed_to: str | None


@dataclass(frozen=True)
class LogEntry:
    sha: str
    date: str
    subject: str


class GitOpsRepo:
    def __init__(self, path: Path, *, remote: str = "origin", timeout: float = 60.0) -> None:
        self.path = path.resolve()
        self.remote_name = remote
        self.timeout = timeout
        if not (self.path / ".git").exists():
            raise UserError(f"{path} is not a git repository",
                            hint="clone the GitOps repository, or `git init` a new one")
        self._identity: tuple[str, ...] | None = None
        self._facts: dict[str, str | None] = {}  # branch and remote, while the lock is held

    # --- git plumbing -------------------------------------------------------------------------
    def _git(self, *args: str, check: bool = True, input: str | None = None) -> \
            subprocess.CompletedProcess[str]:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")
        try:
            proc = subprocess.run(["git", *args], cwd=self.path, env=env, input=input,
                                  capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError:
            raise OperationalError("git is not installed", hint="apt-get install git") from None
        except subprocess.TimeoutExpired:
            raise OperationalError(f"git {args[0]} in {self.path} took more than "
                                   f"{self.timeout:.0f} s") from None
        if check and proc.returncode != 0:
            raise OperationalError(f"git {' '.join(args[:2])} failed in {self.path}: "
                                   f"{proc.stderr.strip()[-800:]}")
        return proc

    def head(self) -> str | None:
        if "head" in self._facts:  # read by check_clean under the lock
            return self._facts["head"]
        proc = self._git("rev-parse", "--verify", "-q", "HEAD", check=False)
        return proc.stdout.strip() or None

    def branch(self) -> str:
        if "branch" not in self._facts:
            proc = self._git("symbolic-ref", "-q", "--short", "HEAD", check=False)
            if proc.returncode != 0:
                raise RepositoryNotReady(
                    f"{self.path}: HEAD is detached",
                    hint="check out the branch Argo CD follows, e.g. `git switch main`")
            self._facts["branch"] = proc.stdout.strip()
        return str(self._facts["branch"])

    def remote_url(self) -> str | None:
        if "remote" not in self._facts:
            proc = self._git("remote", "get-url", self.remote_name, check=False)
            self._facts["remote"] = proc.stdout.strip() or None
        return self._facts["remote"]

    def repo_url(self) -> str:
        """The URL Argo CD clones: the remote's, else this working copy's."""
        return self.remote_url() or self.path.as_uri()

    def read(self, rel: str) -> str | None:
        path = self.path / rel
        try:
            return path.read_text(encoding="utf-8") if path.is_file() else None
        except OSError as err:
            raise OperationalError(f"cannot read {path}: {err.strerror}") from None

    def show(self, sha: str, rel: str) -> str | None:
        proc = self._git("show", f"{sha}:{rel}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def log(self, rel: str, limit: int = 200) -> list[LogEntry]:
        if self.head() is None:
            return []
        out = self._git("log", f"-n{limit}", "--format=%H%x1f%aI%x1f%s", "--", rel).stdout
        return [LogEntry(*line.split("\x1f", 2)) for line in out.splitlines() if line]

    # --- the one write path -------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        with open(self.path / ".git" / "veil-deploy.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            self._facts.clear()  # another process may have switched branch or remote
            try:
                yield
            finally:
                self._facts.clear()
                fcntl.flock(f, fcntl.LOCK_UN)

    def check_clean(self) -> None:
        git_dir = self.path / ".git"
        for marker in ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD"):
            if (git_dir / marker).exists():
                raise RepositoryNotReady(
                    f"{self.path}: a git merge, rebase or cherry-pick is in progress",
                    hint="finish or abort it, then deploy again")
        # one call for cleanliness, the branch and its commit (porcelain v2 headers)
        status = self._git("status", "--porcelain=v2", "--branch",
                           "--untracked-files=all").stdout
        headers = dict(line[2:].split(" ", 1) for line in status.splitlines()
                       if line.startswith("# ") and " " in line[2:])
        changes = [line for line in status.splitlines() if not line.startswith("#")]
        if changes:
            files = [_status_path(line) for line in changes][:10]
            raise RepositoryNotReady(
                f"the GitOps repository {self.path} has uncommitted changes: "
                f"{', '.join(files)}",
                hint="commit, stash or remove them; Veil commits only its own changes")
        if headers.get("branch.head", "(detached)") == "(detached)":
            self.branch()  # raises, saying so
        self._facts["branch"] = headers["branch.head"]
        oid = headers.get("branch.oid", "(initial)")
        self._facts["head"] = None if oid == "(initial)" else oid

    def commit(self, files: Mapping[str, str | None], message: str) -> Commit | None:
        """Write `files` (path → text; None deletes) as one commit and push it. None when
        nothing would change. Call inside `lock()` after `check_clean()`."""
        changed = {rel: text for rel, text in files.items() if self.read(rel) != text}
        if not changed:
            return None
        before = self.head()
        branch = self.branch()
        try:
            for rel, text in sorted(changed.items()):
                target = self._inside(rel)
                if text is None:
                    target.unlink(missing_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(target, text)
            self._git("add", "-A", "--", *sorted(changed))
            self._git(*self._who(), "commit", "-q", "-F", "-", input=message)
            self._facts.pop("head", None)
            sha = self.head() or ""
            pushed = self._push(branch)
        except BaseException:
            self._restore(before, sorted(changed))
            raise
        return Commit(sha, message, tuple(sorted(changed)), pushed)

    def _inside(self, rel: str) -> Path:
        target = (self.path / rel).resolve()
        if self.path not in target.parents or ".git" in Path(rel).parts:
            raise UserError(f"refusing to write {rel}: it is outside the GitOps repository")
        return self.path / rel

    def _who(self) -> tuple[str, ...]:
        if self._identity is None:
            email = self._git("config", "user.email", check=False).stdout.strip()
            self._identity = () if email else _IDENTITY
        return self._identity

    def _push(self, branch: str) -> str | None:
        url = self.remote_url()
        if url is None:
            return None
        proc = self._git("push", "--porcelain", self.remote_name,
                         f"HEAD:refs/heads/{branch}", check=False)
        if proc.returncode != 0:
            why = "; ".join(_push_reasons(proc.stderr + proc.stdout))[-600:] or "no reason given"
            raise PushRejected(
                f"the remote {self.remote_name} refused the push of {branch}: {why}; "
                "nothing was committed",
                hint="if the remote has newer commits, `git pull --rebase` in the GitOps "
                "repository and deploy again")
        return f"{self.remote_name}/{branch}"

    def _restore(self, before: str | None, paths: list[str]) -> None:
        """Back to `before` (None: the branch had no commit yet) with Veil's files gone."""
        if before is not None:
            self._git("reset", "-q", "--hard", before, check=False)
        else:
            branch = self._git("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
            if branch:
                self._git("update-ref", "-d", branch, check=False)
            self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *paths,
                      check=False)
        self._git("clean", "-f", "-q", "--", *paths, check=False)
        for rel in paths:  # folders Veil made for its files, now empty
            parent = (self.path / rel).parent
            while parent != self.path and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


def _push_reasons(output: str) -> list[str]:
    """What the remote said (hook output) and git's verdict per ref, without git's advice."""
    out = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("remote:"):
            text = line[len("remote:"):].strip()
            if text:
                out.append(text)
        elif line.startswith("!") and "\t" in line:
            out.append(line.split("\t")[-1].strip("[] "))
    return list(dict.fromkeys(out))


def _status_path(line: str) -> str:
    """The path of one `git status --porcelain=v2` entry (paths may hold spaces)."""
    fields = {"1": 8, "2": 9, "u": 10}.get(line[:1])
    if fields is None:  # "? path", "! path"
        return line[2:]
    return line.split(" ", fields)[fields].split("\t")[0]
