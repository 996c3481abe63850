"""The deployment document (`kind: deployment`), the same for `veil deploy -f` and
`POST /deployments`, and the teams file of a GitOps repository.

    apiVersion: veil/v1
    kind: deployment
    team: ml                      # the team's namespace (listed in the GitOps repo's teams.yaml)
    app: fraud-v2                 # the deployment's name in the team
    image: REGISTRY/PATH:TAG[@sha256:...]    # and/or build: ID (a platform build)
    chart: {wrapper: flask}       # or {path: DIR}: a chart folder, e.g. Veil's generated one
    code: ./repo                  # optional: the program's source, scanned for the env it reads
    env: {NAME: value}            # deploy-time environment
    values: {replicaCount: 2}     # further Helm values
    sidecars: [{name, image, env?, args?}]
    alias: fraud                  # optional stable name that points at this deployment
    cluster: https://kubernetes.default.svc
    serviceAccount: {roleArn: arn:aws:iam::...}   # optional; else the build's role
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from veil.manifest.imageref import FORM, reference_problem

__all__ = [
    "DNS_LABEL",
    "RESERVED_NAMES",
    "VALUES_SET_BY_VEIL",
    "Chart",
    "Deployment",
    "ServiceAccount",
    "Sidecar",
    "Team",
    "Teams",
]

# A team and an app are DNS labels without "--": Argo CD object names join them with "--".
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ROLE_ARN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
RESERVED_NAMES = frozenset({"namespace", "project"})
# Values Veil computes from the checked fields; a deployment cannot override them in `values`.
VALUES_SET_BY_VEIL = ("image", "env", "sidecars", "serviceAccount", "kind", "veil")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name(value: str, what: str) -> str:
    if "--" in value:
        raise ValueError(f"the {what} name may not hold '--' (Veil joins team and app with it)")
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved; choose another {what} name")
    return value


def _image(value: str) -> str:
    why = reference_problem(value)
    if why or "$" in value:
        raise ValueError(f"not an image reference: {why or 'it holds a shell variable'}; "
                         f"expected {FORM}")
    return value


class Chart(_Strict):
    """Veil's wrapper chart for a wrapped program, or a chart folder (Veil's generated chart)."""

    wrapper: Literal["flask", "kafka"] | None = None
    path: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Chart:
        if (self.wrapper is None) == (self.path is None):
            raise ValueError("name exactly one of `wrapper` (flask or kafka) or `path`")
        return self


class Sidecar(_Strict):
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
    image: str
    env: dict[str, str] = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list)

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str) -> str:
        return _image(v)


class ServiceAccount(_Strict):
    roleArn: Annotated[str | None, Field(pattern=ROLE_ARN)] = None


class Deployment(_Strict):
    apiVersion: Literal["veil/v1"] = "veil/v1"
    kind: Literal["deployment"] = "deployment"
    team: Annotated[str, Field(pattern=DNS_LABEL, max_length=30)]
    app: Annotated[str, Field(pattern=DNS_LABEL, max_length=31)]
    image: str | None = None
    build: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    chart: Chart
    code: Annotated[str | None, Field(min_length=1)] = None
    env: dict[str, str] = Field(default_factory=dict)
    values: dict[str, Any] = Field(default_factory=dict)
    sidecars: list[Sidecar] = Field(default_factory=list)
    alias: Annotated[str | None, Field(pattern=DNS_LABEL, max_length=31)] = None
    cluster: Annotated[str, Field(min_length=1)] = "https://kubernetes.default.svc"
    serviceAccount: ServiceAccount = Field(default_factory=ServiceAccount)

    @field_validator("team")
    @classmethod
    def _team(cls, v: str) -> str:
        return _name(v, "team")

    @field_validator("app", "alias")
    @classmethod
    def _app(cls, v: str | None) -> str | None:
        return v if v is None else _name(v, "app")

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str | None) -> str | None:
        return v if v is None else _image(v)

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"not an environment variable name: {', '.join(bad)}")
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: dict[str, Any]) -> dict[str, Any]:
        taken = [k for k in VALUES_SET_BY_VEIL if k in v]
        if taken:
            raise ValueError(f"values.{taken[0]} is set by Veil from the checked fields "
                             "(image, env, sidecars, serviceAccount); set those instead")
        return v

    @model_validator(mode="after")
    def _image_or_build(self) -> Deployment:
        if self.image is None and self.build is None:
            raise ValueError("name the image: `image` (a reference) or `build` (a platform "
                             "build id; with `image` too, the one of its images to deploy)")
        if self.alias is not None and self.alias == self.app:
            raise ValueError("the alias must differ from the app name")
        if self.chart.path is not None and (self.env or self.sidecars):
            raise ValueError("`env` and `sidecars` reach the pods through Veil's wrapper chart; "
                             "a chart folder sets its own (use `values`)")
        names = [s.name for s in self.sidecars]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({"app"} & set(names)))
        if dupes:
            raise ValueError(f"sidecar names must be unique and not 'app': {', '.join(dupes)}")
        return self

    @property
    def application(self) -> str:
        """The Argo CD Application's name (Application names share one namespace)."""
        return f"{self.team}--{self.app}"


class Team(_Strict):
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=30)]
    description: str = ""
    clusters: list[str] = Field(default_factory=list)  # allowed destinations; empty = any

    @field_validator("name")
    @classmethod
    def _team(cls, v: str) -> str:
        return _name(v, "team")


class Teams(_Strict):
    """`teams.yaml` at the top of a GitOps repository: the teams platform admins created."""

    teams: list[Team]
    # What this platform's clusters inject into every pod beyond Veil's own list (name →
    # where it comes from), e.g. an agent's address set by an admission webhook.
    platformEnv: dict[str, str] = Field(default_factory=dict)

    @field_validator("platformEnv")
    @classmethod
    def _platform_env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"not an environment variable name: {', '.join(bad)}")
        return v

    def get(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)
