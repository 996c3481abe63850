"""Typed models of the two manifest kinds: `genservice` (one service) and `mesh` (an application).

Fields follow the sconectl manifest reference (apiVersion scone/5.8). These models only describe
shape and simple value rules; cross-references (secret references, templates, duplicate names) are
checked by `veil.manifest.check`, which knows the source positions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

__all__ = [
    "Build",
    "Cas",
    "EnvVar",
    "Environment",
    "GenService",
    "GlobalEnvVar",
    "InjectionFile",
    "Mesh",
    "MeshEnvGroup",
    "MeshEnvItem",
    "MeshService",
    "Policy",
    "Repo",
    "Secret",
    "SecretKind",
    "Secrets",
    "Signature",
    "env_value",
    "scalar_to_str",
]

API_VERSION_RE = re.compile(r"^scone/(\d+)\.(\d+)(?:\.(\d+))?$")
MIN_API = (5, 8)
SECRET_KINDS = ("ascii", "binary", "private-key", "x509", "x509-ca", "explicit")
SecretKind = Literal["ascii", "binary", "private-key", "x509", "x509-ca", "explicit"]
Scalar = str | int | float | bool


def _check_api_version(v: str) -> str:
    m = API_VERSION_RE.match(v)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_API:
        raise ValueError(f"apiVersion {v!r} is not supported")
    return v


class _Model(BaseModel):
    # defer_build: a model's validator is built when first used, so a command that reads a
    # service manifest does not pay for building the mesh's models (start-up time)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


def scalar_to_str(v: Any) -> Any:
    """YAML `value: 443` and `value: true` mean the strings an environment variable holds."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return v


def env_value(v: Any) -> Any:
    """An environment value as the program receives it.

    sconectl pastes a value into YAML it generates, so its users write a multi-line value with
    a first line of just `|` (`value: "|\n  line 1\n  line 2"`) to make it a block there; the
    program gets the lines after it. Veil hands values on as text, so that first line is
    dropped and the rest passes through intact (as does a plain `value: |` block scalar).
    """
    v = scalar_to_str(v)
    if isinstance(v, str) and "\n" in v:
        first, rest = v.split("\n", 1)
        if first.strip() == "|":
            return rest
    return v


class EnvVar(_Model):
    """A `local` variable: fixed by the service author."""

    name: Annotated[str, Field(min_length=1)]
    value: str

    _norm = field_validator("value", mode="before")(env_value)


class GlobalEnvVar(_Model):
    """A `global` variable: an input of the service; `value` is its default."""

    name: Annotated[str, Field(min_length=1)]
    value: str | None = None

    _norm = field_validator("value", mode="before")(env_value)


class Environment(_Model):
    local: list[EnvVar] = Field(default_factory=list)
    global_: list[GlobalEnvVar] = Field(default_factory=list, alias="global")

    @field_validator("local", "global_", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


class Secret(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")]
    kind: SecretKind
    size: Annotated[int, Field(gt=0, le=1 << 20)] | None = None
    value: str | None = None
    private_key: str | None = None
    issuer: str | None = None
    dns: list[str] | None = None
    common_name: str | None = None
    valid_for: str | None = None
    export: list[str] | str | None = None
    key_type: (
        Literal["EC", "ec", "RSA", "rsa", "Ed25519", "ed25519", "P-256", "P-384"] | None
    ) = None
    external: bool = False


class Secrets(_Model):
    global_: list[Secret] = Field(default_factory=list, alias="global")
    local: list[Secret] = Field(default_factory=list)
    import_: list[str] = Field(default_factory=list, alias="import")

    @field_validator("global_", "local", "import_", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    def all(self) -> list[Secret]:
        return [*self.global_, *self.local]


class InjectionFile(_Model):
    path: Annotated[str, Field(min_length=1)]
    content: str = ""
    permission: str | int | None = None


class Signature(_Model):
    sign: bool = False
    key: str | None = None


# `build.name` names the folder `target/<name>/`: one path segment, no `..`, no spaces.
BUILD_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


# sconectl's Java kinds: a JRE of that major version (`java` alone: the default one), on
# Debian (glibc) or Ubuntu
BuildKind = Literal[
    "python", "java", "java-glibc", "java-ubuntu", "java8", "java8-glibc", "java8-ubuntu",
    "java11", "java11-glibc", "java11-ubuntu", "java17", "java17-glibc", "java17-ubuntu",
    "java21", "java21-glibc", "java21-ubuntu",
]
# places a host directory cannot stand in for: the program, the launcher, the system's own
_NOT_HOST = ("/", "/opt/veil", "/etc/veil", "/proc", "/sys", "/dev", "/usr", "/bin", "/lib")


class Build(_Model):
    name: Annotated[str, Field(min_length=1, pattern=BUILD_NAME_RE)]
    kind: BuildKind = "python"
    to: Annotated[str, Field(min_length=1)]
    pwd: str = "/app"
    # Optional only with `wrap`: the wrapper then supplies its own command.
    command: Annotated[str, Field(min_length=1)] | None = None
    requirements: str | None = None
    copy_: list[str] = Field(default_factory=list, alias="copy")
    run: list[str] = Field(default_factory=list)
    signature: Signature | None = None
    from_: str | None = Field(default=None, alias="from")
    wrap: Literal["flask", "kafka"] | None = None
    entrypoint: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    # sconectl's rolling update: the image deployed now stays accepted beside the new one
    stable: Annotated[str, Field(min_length=1)] | None = None
    # host directories the program reads at run time (CA certificates...): not measured
    host_paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, validation_alias=AliasChoices("host_paths", "host_path"))

    @field_validator("copy_", "run", "host_paths", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        if isinstance(v, str):  # `host_path: /etc/ssl/certs`, one directory
            return [v]
        return [] if v is None else v

    @field_validator("host_paths")
    @classmethod
    def _host_paths(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            norm = re.sub(r"/+$", "", re.sub(r"/+", "/", p)) or "/"
            if not p.startswith("/") or "/../" in norm + "/" or "/./" in norm + "/":
                raise ValueError(f"host path {p!r} must be an absolute path without . or ..")
            if norm in _NOT_HOST or norm.startswith(("/opt/veil/", "/etc/veil/")):
                raise ValueError(f"host path {p!r} would replace part of the image itself")
            out.append(norm)
        return out

    @model_validator(mode="after")
    def _command_or_wrapper(self) -> Build:
        if self.wrap is None and self.command is None:
            raise ValueError("build.command is required (unless build.wrap names a wrapper)")
        if self.wrap is not None and self.entrypoint is None:
            raise ValueError(
                f"build.wrap: {self.wrap} needs build.entrypoint "
                "(module:callable, e.g. model:predict)"
            )
        if self.kind != "python" and self.requirements:
            raise ValueError(f"build.requirements is a pip requirements file; a {self.kind} "
                             "service copies its jars with build.copy")
        pwd = self.pwd.rstrip("/")
        for p in self.host_paths:
            if p == pwd or p.startswith(pwd + "/") or pwd.startswith(p + "/"):
                raise ValueError(f"host path {p} overlaps build.pwd {self.pwd}: the program's "
                                 "own files are measured, never taken from the host")
        return self


class GenService(_Model):
    api_version: str = Field(alias="apiVersion")
    kind: Literal["genservice"]
    environment: Environment = Field(default_factory=Environment)
    secrets: Secrets = Field(default_factory=Secrets)
    injection_files: list[InjectionFile] = Field(default_factory=list)
    build: Build
    # older manifests name the requirements file at the top level; it means build.requirements
    requirements: str | None = Field(default=None, exclude=True)

    _api = field_validator("api_version")(_check_api_version)

    @model_validator(mode="after")
    def _legacy_requirements(self) -> GenService:
        if self.requirements is None:
            return self
        if self.build.requirements not in (None, self.requirements):
            raise ValueError(
                f"requirements: {self.requirements} (top level, deprecated) and "
                f"build.requirements: {self.build.requirements} name different files; keep "
                "build.requirements only")
        self.build.requirements = self.requirements
        return self

    @field_validator("environment", "secrets", mode="before")
    @classmethod
    def _none_is_default(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("injection_files", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


CAS_ALIASES = ("image", "security", "access", "attestation")


class Cas(_Model):
    name: Annotated[str, Field(min_length=1)]
    alias: list[Literal["image", "security", "access", "attestation"]] = Field(default_factory=list)
    cas_url: Annotated[str, Field(min_length=1)]
    cas_key: str | None = None
    cas_encryption_key: str | None = None
    tolerance: str | None = None
    # how sconectl hands policies to this CAS; `veil.manifest.casmode` says what Veil does
    mode: Literal["EncryptedManifest", "SignedManifest", "SignOnline"] | None = None


class Policy(_Model):
    namespace: Annotated[str, Field(min_length=1)]
    # sconectl writes both as a comma-separated string; a YAML list means the same
    tolerate: str | list[str] | None = None
    ignore_advisories: str | list[str] | None = None

    @property
    def tolerated(self) -> list[str]:
        """`tolerate` as a sorted list without duplicates or empty items."""
        return _items_of(self.tolerate)

    @property
    def ignored_advisories(self) -> list[str]:
        """`ignore_advisories` as a list; `["*"]` ignores every advisory."""
        items = _items_of(self.ignore_advisories)
        return ["*"] if "*" in items else items


def _items_of(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    parts = v.split(",") if isinstance(v, str) else v
    return sorted({p.strip() for p in parts if p and p.strip()})


class MeshEnvGroup(_Model):
    """One `- service: NAME` item of a mesh's grouped `env` form."""

    service: Annotated[str, Field(min_length=1)]
    env: list[GlobalEnvVar] = Field(default_factory=list)

    @field_validator("env", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


def _env_item_tag(v: Any) -> str:
    if isinstance(v, dict) and "service" in v:
        return "group"
    if isinstance(v, MeshEnvGroup):
        return "group"
    return "var"


# A tagged union so that a bad item is reported against the shape it was meant to have.
MeshEnvItem = Annotated[
    Annotated[GlobalEnvVar, Tag("var")] | Annotated[MeshEnvGroup, Tag("group")],
    Discriminator(_env_item_tag),
]


class MeshService(_Model):
    name: Annotated[str, Field(min_length=1)]
    image: Annotated[str, Field(min_length=1)]
    image_secrets: str | None = None
    env: list[GlobalEnvVar] = Field(default_factory=list)

    @field_validator("env", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


class Repo(_Model):
    destination: Annotated[str, Field(min_length=1)]
    squash: bool = False
    signature: str | None = None


class Mesh(_Model):
    api_version: str = Field(alias="apiVersion")
    kind: Literal["mesh"]
    cas: list[Cas] = Field(min_length=1)
    policy: Policy
    # Both shapes of the reference, and a mix of them: a flat `{name, value}` item is a `global`
    # entry. The mix appears when a `- service: ...` patch is appended to a flat mesh.
    env: list[MeshEnvItem] = Field(default_factory=list)
    services: list[MeshService] = Field(min_length=1)
    repo: Repo | None = None
    helm_extra_values: str | dict[str, Any] | None = None
    extra_policies: list[Any] = Field(default_factory=list)

    _api = field_validator("api_version")(_check_api_version)

    @field_validator("env", "extra_policies", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v
