"""The service description: what a mesh needs to know about an image.

It travels inside the image (label `LABEL_KEY`, JSON) and in the local index, so a mesh can be
applied from image names alone. It is derived from a genservice manifest; the build adds the
measurement and the pinned base image.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from veil.manifest.models import EnvVar, GenService, GlobalEnvVar, InjectionFile, Secret

__all__ = ["LABEL_KEY", "SCHEMA", "ServiceDescription", "StableImage"]

SCHEMA = "veil/service-description/v1"
LABEL_KEY = "dev.veil.service-description"


class StableImage(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when first used

    image: str
    measurement: str
    digest: str | None = None


class ServiceDescription(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when first used

    schema_: str = Field(default=SCHEMA, alias="schema")
    name: str
    image: str
    kind: str = "python"
    command: str
    argv: list[str]
    pwd: str
    local_env: list[EnvVar] = Field(default_factory=list)
    global_env: list[GlobalEnvVar] = Field(default_factory=list)
    secrets: list[Secret] = Field(default_factory=list)
    secrets_global: list[str] = Field(
        default_factory=list, description="names of secrets in the manifest's `global` section"
    )
    imports: list[str] = Field(default_factory=list)
    injection_files: list[InjectionFile] = Field(default_factory=list)
    wrap: str | None = None
    entrypoint: str | None = None
    manifest_digest: str
    measurement: str | None = None
    base_image: str | None = None
    base_digest: str | None = None
    # sconectl's `--set-version` the image was applied with (recorded, selects nothing)
    version: str | None = None
    # `apply -f service.yaml --helm-template DIR`: the chart templates the service carries
    # to its mesh's chart (path relative to DIR -> text)
    helm_template: dict[str, str] | None = None
    # `build.stable`: the image deployed now, whose measurement the session keeps accepting
    # beside this one until an apply without `stable`
    stable: StableImage | None = None
    # `build.host_paths`: directories the program reads from the host, outside the measurement
    host_paths: list[str] = Field(default_factory=list)

    @classmethod
    def from_genservice(cls, svc: GenService) -> ServiceDescription:
        b = svc.build
        command = b.command or ""  # a wrapped service gets its command from the wrapper
        return cls(
            name=b.name,
            image=b.to,
            kind=b.kind,
            command=command,
            argv=shlex.split(command),
            pwd=b.pwd,
            local_env=list(svc.environment.local),
            global_env=list(svc.environment.global_),
            secrets=svc.secrets.all(),
            secrets_global=[s.name for s in svc.secrets.global_],
            imports=list(svc.secrets.import_),
            injection_files=list(svc.injection_files),
            wrap=b.wrap,
            entrypoint=b.entrypoint,
            manifest_digest=manifest_digest(svc),
            base_image=b.from_,
            host_paths=list(b.host_paths),
        )

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace — the same input gives the same bytes."""
        return json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )

    @classmethod
    def from_json(cls, text: str) -> ServiceDescription:
        return cls.model_validate(json.loads(text))


def manifest_digest(svc: GenService) -> str:
    data: Any = svc.model_dump(mode="json", by_alias=True)
    canon = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canon).hexdigest()
