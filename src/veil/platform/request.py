"""`POST /containerbuild`'s body (exactly the seed's thirteen fields) and the API's answers.

Everything that can be judged without running the build is judged here, so that bad input is a
422 naming the field before a build exists: repository URLs (no local paths, no `ext::` or
`file://` transports, nothing starting with `-`), branch and commit forms, paths inside the
checkout (relative, no `..`), image names, tags, registries, namespace and the build args.

A build arg is secret when its name carries the prefix `secret:` (`"secret:PIP_TOKEN": "..."`).
The builder hands it to the Dockerfile as a build secret (`RUN --mount=type=secret,id=PIP_TOKEN`),
never as a build arg, so it reaches neither the image config nor its history; it is not labelled,
its value is masked in the logs and it is kept in the job store only sealed, until the build ends.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from veil.manifest.imageref import REFERENCE_RE

__all__ = [
    "CUSTOMER_ARGS",
    "SECRET_PREFIX",
    "BuildOut",
    "BuildSubmitted",
    "ContainerBuildRequest",
    "check_repository_url",
]

SECRET_PREFIX = "secret:"
# Build args that make the platform fetch a customer repository into the docker context.
CUSTOMER_ARGS = ("CUSTOMER_REPOSITORY", "CUSTOMER_COMMIT_SHA", "CUSTOMER_GIT_BRANCH")

_URL = re.compile(r"^(?:https?|git)://[A-Za-z0-9.\-\[\]:]+(?::\d+)?(?:/[A-Za-z0-9._~%+\-/]*)?$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/\-]{1,200}(?<![./])$")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._\-/][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_REGISTRY = re.compile(
    r"^(?:[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+(?::\d+)?|[A-Za-z0-9\-]+:\d+|localhost(?::\d+)?)"
    r"(?:/[a-z0-9]+(?:[._\-/][a-z0-9]+)*)?$"
)
_NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$")
_ARN = re.compile(r"^(?:arn:aws[a-z\-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/\-]{1,512})?$")
_ALIAS = re.compile(r"^(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)?$")
_ARG = re.compile(r"^(?:secret:)?[A-Za-z_][A-Za-z0-9_]{0,127}$")

Text = Annotated[str, Field(max_length=2000)]


def check_repository_url(url: str) -> str:
    """A remote git URL over https, http or git://; never a local path or another transport."""
    if not _URL.match(url) or ".." in url.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError(
            "must be a git URL over https://, http:// or git:// (no local paths, file://, "
            "ssh or ext:: transports, no user names or spaces)")
    return url


def _relative_path(value: str, what: str) -> str:
    if value.startswith("/"):
        raise ValueError(f"{what} must be relative to the repository, not absolute")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{what} must stay inside the repository (no `..`)")
    if any(c in value for c in "\0\n\r\\") or value.startswith("-"):
        raise ValueError(f"{what} holds characters a path here may not hold")
    return "/".join(parts) or "."


class ContainerBuildRequest(BaseModel):
    """The seed's `containerbuild` body; any other field is refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    repository: Text
    git_branch: Text
    git_commit_sha: Text
    image_name: Text
    dockerfile_path: Text
    docker_context: Text
    namespace: Text
    image_tags: Annotated[list[Annotated[str, Field(max_length=128)]],
                          Field(max_length=64)] = Field(default_factory=list)
    injected_aws_role_arn: Text
    injected_aws_account_short_alias: Text
    registries: Annotated[list[Annotated[str, Field(max_length=300)]],
                          Field(max_length=16)] = Field(default_factory=list)
    build_args: Annotated[dict[str, Annotated[str, Field(max_length=8192)]],
                          Field(max_length=128)] = Field(default_factory=dict)
    git_fetch_depth: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str) -> str:
        return check_repository_url(v)

    @field_validator("git_branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        if not _BRANCH.match(v):
            raise ValueError("must be a branch name (letters, digits, . _ / -; not starting "
                             "with - and without ..)")
        return v

    @field_validator("git_commit_sha")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not _SHA.match(v):
            raise ValueError("must be a full commit id: 40 (or 64) lower-case hex digits")
        return v

    @field_validator("image_name")
    @classmethod
    def _image(cls, v: str) -> str:
        if not _IMAGE.match(v):
            raise ValueError("must be a repository path: lower-case letters, digits and single "
                             ". _ - / between them, without registry or tag")
        return v

    @field_validator("dockerfile_path")
    @classmethod
    def _dockerfile(cls, v: str) -> str:
        v = _relative_path(v, "dockerfile_path")
        if v == ".":
            raise ValueError("dockerfile_path must name a file")
        return v

    @field_validator("docker_context")
    @classmethod
    def _context(cls, v: str) -> str:
        return _relative_path(v, "docker_context")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _NAMESPACE.match(v):
            raise ValueError("must be a Kubernetes namespace name (lower-case letters, digits "
                             "and -, at most 63)")
        return v

    @field_validator("image_tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for i, tag in enumerate(v):
            if not _TAG.match(tag):
                raise ValueError(f"image_tags[{i}]: a tag holds letters, digits, _ . - (at most "
                                 "128, not starting with . or -)")
        return list(dict.fromkeys(v))

    @field_validator("registries")
    @classmethod
    def _registries(cls, v: list[str]) -> list[str]:
        for i, reg in enumerate(v):
            if not _REGISTRY.match(reg):
                raise ValueError(f"registries[{i}]: a registry is HOST[:PORT][/PATH] (a host "
                                 "with a dot or a port, or localhost)")
        return list(dict.fromkeys(v))

    @field_validator("injected_aws_role_arn")
    @classmethod
    def _arn(cls, v: str) -> str:
        if not _ARN.match(v):
            raise ValueError("must be an IAM role ARN, arn:aws:iam::ACCOUNT(12 digits):role/NAME "
                             "(or empty)")
        return v

    @field_validator("injected_aws_account_short_alias")
    @classmethod
    def _alias(cls, v: str) -> str:
        if not _ALIAS.match(v):
            raise ValueError("must be a short alias: lower-case letters, digits and - "
                             "(or empty)")
        return v

    @field_validator("build_args")
    @classmethod
    def _args(cls, v: dict[str, str]) -> dict[str, str]:
        names: set[str] = set()
        for key, value in v.items():
            if not _ARG.match(key):
                raise ValueError(f"build arg name {key[:80]!r} is not an ARG name (letters, "
                                 "digits, _; `secret:` in front marks a secret)")
            if "\0" in value:
                raise ValueError(f"build arg {key}: a value may not hold NUL")
            name = key.removeprefix(SECRET_PREFIX)
            if name in names:
                raise ValueError(f"build arg {name} is given twice (plain and secret)")
            names.add(name)
        return v

    @model_validator(mode="after")
    def _together(self) -> ContainerBuildRequest:
        for reg in self.registries:
            if not REFERENCE_RE.match(f"{reg}/{self.image_name}:x"):
                raise ValueError(f"{reg}/{self.image_name} is not a valid image reference")
        for key in self.build_args:
            if key.startswith(SECRET_PREFIX) and key.removeprefix(SECRET_PREFIX) in CUSTOMER_ARGS:
                raise ValueError(f"build arg {key}: the customer repository is not a secret")
        url = self.build_args.get("CUSTOMER_REPOSITORY")
        sha = self.build_args.get("CUSTOMER_COMMIT_SHA")
        if url is None and sha is None and "CUSTOMER_GIT_BRANCH" not in self.build_args:
            return self
        if url is None or sha is None:
            raise ValueError("build args CUSTOMER_REPOSITORY and CUSTOMER_COMMIT_SHA go together")
        try:
            check_repository_url(url)
        except ValueError as err:
            raise ValueError(f"build arg CUSTOMER_REPOSITORY {err}") from None
        if not _SHA.match(sha):
            raise ValueError("build arg CUSTOMER_COMMIT_SHA must be a full commit id")
        branch = self.build_args.get("CUSTOMER_GIT_BRANCH", "main")
        if not _BRANCH.match(branch):
            raise ValueError("build arg CUSTOMER_GIT_BRANCH must be a branch name")
        return self

    # -- what the builder and the job store use ------------------------------------------
    @property
    def tags(self) -> list[str]:
        """The tags to push: `image_tags`, or the commit id when none is given."""
        return self.image_tags or [self.git_commit_sha]

    def image_refs(self) -> dict[str, list[str]]:
        """registry → every reference pushed there."""
        return {reg: [f"{reg}/{self.image_name}:{t}" for t in self.tags] for reg in self.registries}

    def plain_args(self) -> dict[str, str]:
        return {k: v for k, v in self.build_args.items() if not k.startswith(SECRET_PREFIX)}

    def secret_args(self) -> dict[str, str]:
        return {k.removeprefix(SECRET_PREFIX): v for k, v in self.build_args.items()
                if k.startswith(SECRET_PREFIX)}

    def public(self) -> dict[str, Any]:
        """The request as stored and shown: secret build args by name only."""
        data = self.model_dump()
        data["build_args"] = {
            k: ("(secret)" if k.startswith(SECRET_PREFIX) else v)
            for k, v in self.build_args.items()
        }
        return data


class BuildSubmitted(BaseModel):
    id: str
    status: str
    location: str


class BuildOut(BaseModel):
    id: str
    status: str  # queued | running | succeeded | failed | cancelled
    namespace: str
    image_name: str
    repository: str
    git_commit_sha: str
    created: float
    started: float | None = None
    finished: float | None = None
    duration: float | None = None
    worker: str | None = None
    error: str | None = None
    digests: dict[str, str] = Field(default_factory=dict)  # registry → manifest digest
    images: list[str] = Field(default_factory=list)  # every reference pushed
    cancel_requested: bool = False
    request: dict[str, Any] = Field(default_factory=dict)
