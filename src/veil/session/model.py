"""The session document CAS stores: a pure data model, modelled on SCONE session language 0.3.

A session says which services may attest (image, command, pwd, measurements), what they are given
(environment, injection files, with `$$SCONE::x$$` references to secrets), which secrets CAS
generates, who may read or update it, and how strict attestation is. Mesh apply derives sessions
from manifests; `veil session create -f` takes one written by hand. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from veil.manifest.models import scalar_to_str
from veil.manifest.refs import find_secret_refs

__all__ = [
    "CREATOR",
    "PLATFORMS",
    "SECRET_KINDS",
    "AccessPolicy",
    "AttestationPolicy",
    "ExportTarget",
    "Image",
    "InjectionFile",
    "PlatformPolicy",
    "Release",
    "SecretDef",
    "SecretImport",
    "Security",
    "Service",
    "ServiceAttestation",
    "SessionDoc",
    "session_hash",
]

CREATOR = "CREATOR"
SECRET_KINDS = ("ascii", "binary", "private-key", "x509", "x509-ca", "explicit")
NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
HEX64 = r"^[0-9a-f]{64}$"
HEX_LAUNCH = r"^[0-9a-f]{64}([0-9a-f]{32})?$"
MODE = r"^0?[0-7]{3,4}$"
QUALIFIED = r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*/)?[A-Za-z0-9_][A-Za-z0-9_.\-]*$"

SecretKind = Literal["ascii", "binary", "private-key", "x509", "x509-ca", "explicit"]
KeyType = Literal["EC", "P-256", "P-384", "RSA", "Ed25519"]
_KEY_TYPE_ALIASES = {
    "ec": "EC",
    "p-256": "P-256",
    "p-384": "P-384",
    "rsa": "RSA",
    "ed25519": "Ed25519",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttestationPolicy(_Model):
    """`mode: debug` or a tolerance of `debug-mode`/`simulation` admits simulation evidence."""

    mode: Literal["debug", "production"] = "production"
    tolerate: list[str] = Field(default_factory=list)
    ignore_advisories: list[str] = Field(default_factory=list)

    @property
    def allows_simulation(self) -> bool:
        return self.mode == "debug" or bool({"debug-mode", "simulation"} & set(self.tolerate))

    @property
    def allows_debug(self) -> bool:
        """A TEE whose debug switch is on (its memory can be read by the host) is accepted."""
        return self.mode == "debug" or "debug-mode" in self.tolerate


class Security(_Model):
    attestation: AttestationPolicy = Field(default_factory=AttestationPolicy)


class AccessPolicy(_Model):
    """Client identities (hex SHA-256 of a public key), `CREATOR`, or `ANY`."""

    read: list[str] = Field(default_factory=lambda: [CREATOR])
    update: list[str] = Field(default_factory=lambda: [CREATOR])


PLATFORMS = ("sev-snp", "tdx", "sgx-dcap")
Platform = Literal["sev-snp", "tdx", "sgx-dcap"]


class PlatformPolicy(_Model):
    """What a hardware platform must report besides the Veil measurement: its launch
    measurement (SEV-SNP `measurement`, TDX `mrtd`: 96 hex; SGX `mrenclave`: 64 hex) and,
    optionally, a minimum TCB (component name -> lowest accepted security version)."""

    measurement: list[Annotated[str, Field(pattern=HEX_LAUNCH)]] = Field(min_length=1)
    min_tcb: dict[str, Annotated[int, Field(ge=0, le=65535)]] = Field(default_factory=dict)

    @field_validator("measurement", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class ServiceAttestation(_Model):
    measurement: list[Annotated[str, Field(pattern=HEX64)]] = Field(default_factory=list)
    # hardware evidence is accepted only for platforms named here
    platforms: dict[Platform, PlatformPolicy] = Field(default_factory=dict)

    @field_validator("measurement", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Service(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    image_name: str | None = None
    command: str | list[str]
    pwd: str = "/"
    environment: dict[str, str] = Field(default_factory=dict)
    attestation: ServiceAttestation = Field(default_factory=ServiceAttestation)

    @field_validator("environment", mode="before")
    @classmethod
    def _values_are_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: scalar_to_str(x) for k, x in v.items()}
        return v


class ExportTarget(_Model):
    """Another session allowed to import a secret; `namespace` defaults to the exporter's."""

    session: Annotated[str, Field(pattern=NAME)]
    namespace: Annotated[str, Field(pattern=NAME)] | None = None


class SecretImport(_Model):
    """`session` is `name` (same namespace) or `namespace/name`; `secret` defaults to our name."""

    session: Annotated[str, Field(pattern=QUALIFIED)]
    secret: str | None = None


class SecretDef(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")]
    kind: SecretKind | None = None
    size: Annotated[int, Field(gt=0, le=1 << 16)] | None = None
    charset: Annotated[str, Field(min_length=2)] | None = None
    value: str | None = None
    key_type: KeyType | None = None
    key_size: Literal[2048, 3072, 4096] | None = None
    private_key: str | None = None
    issuer: str | None = None
    common_name: str | None = None
    dns: list[str] = Field(default_factory=list)
    valid_for: Annotated[int, Field(gt=0, le=36500)] | None = Field(
        default=None, description="days"
    )
    export: list[ExportTarget] = Field(default_factory=list)
    import_: SecretImport | None = Field(default=None, alias="import")
    # generated from the randomness of CAS's PKCS#11 token (see the CAS docs)
    external: bool | None = None  # None (absent) keeps hashes of older documents unchanged

    @field_validator("key_type", mode="before")
    @classmethod
    def _key_type_alias(cls, v: Any) -> Any:
        if isinstance(v, str):
            return _KEY_TYPE_ALIASES.get(v.lower(), v)
        return v

    @field_validator("valid_for", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        # "90d" and "90" both mean 90 days
        if isinstance(v, str) and re.fullmatch(r"\d+d?", v.strip()):
            return int(v.strip().rstrip("d"))
        return v

    @field_validator("export", mode="before")
    @classmethod
    def _export_forms(cls, v: Any) -> Any:
        # `export: other` / `export: [ns/other]` are short for `{session, namespace}`
        if v is None:
            return []
        items = v if isinstance(v, list) else [v]
        out: list[Any] = []
        for item in items:
            if isinstance(item, str):
                ns, _, name = item.rpartition("/")
                out.append({"session": name, "namespace": ns or None})
            else:
                out.append(item)
        return out

    @field_validator("import_", mode="before")
    @classmethod
    def _import_form(cls, v: Any) -> Any:
        return {"session": v} if isinstance(v, str) else v


class InjectionFile(_Model):
    path: Annotated[str, Field(pattern=r"^/")]
    content: str = ""
    mode: Annotated[str, Field(pattern=MODE)] = "0600"

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        # YAML reads `mode: 0600` as the integer 384 and `mode: 600` as 600
        if isinstance(v, int):
            digits = str(v)
            if set(digits) <= set("01234567") and len(digits) <= 4:
                return digits.rjust(4, "0")
            return f"0{v:o}"
        return v


class Image(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    injection_files: list[InjectionFile] = Field(default_factory=list)


class Release(_Model):
    """Which release of a mesh wrote this version (`veil apply -f mesh.yaml --release NAME
    --release-version N`; N is sconectl's rolling release number). A record only: attestation,
    provisioning and secrets ignore it; a new value makes a new version, like any change."""

    name: Annotated[str, Field(pattern=NAME, max_length=253)] | None = None
    version: Annotated[int, Field(ge=0)] | None = None


class SessionDoc(_Model):
    version: Literal["0.3"] = "0.3"
    name: Annotated[str, Field(pattern=NAME)]
    predecessor: Annotated[str, Field(pattern=HEX64)] | None = None
    # absent unless given, so documents without it keep their hashes
    release: Release | None = None
    access_policy: AccessPolicy = Field(default_factory=AccessPolicy)
    security: Security = Field(default_factory=Security)
    services: list[Service] = Field(default_factory=list)
    secrets: list[SecretDef] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, float) else v

    @field_validator("release")
    @classmethod
    def _empty_release(cls, v: Release | None) -> Release | None:
        # `release: {}` says nothing: the same document (and hash) as no release
        return None if v is not None and v.name is None and v.version is None else v

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def image(self, name: str | None) -> Image | None:
        return next((i for i in self.images if i.name == name), None)

    def secret(self, name: str) -> SecretDef | None:
        return next((s for s in self.secrets if s.name == name), None)

    def canonical(self) -> dict[str, Any]:
        """The document as plain data, explicit secret values left out (they live sealed)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for s in data.get("secrets", []):
            if "value" in s:
                s["value"] = "<explicit>"
        for svc in data.get("services", []):
            # absent and empty are the same policy; keep hashes of older documents unchanged
            if not svc.get("attestation", {}).get("platforms", True):
                del svc["attestation"]["platforms"]
        return data

    def check(self) -> list[tuple[str, str]]:
        """Cross-reference problems as (field path, message); empty when the document is sound."""
        out: list[tuple[str, str]] = []
        for field_name, names in (
            ("services", [s.name for s in self.services]),
            ("secrets", [s.name for s in self.secrets]),
            ("images", [i.name for i in self.images]),
        ):
            seen: set[str] = set()
            for i, name in enumerate(names):
                if name in seen:
                    out.append((f"{field_name}[{i}].name", f"duplicate name {name!r}"))
                seen.add(name)
        kinds = {s.name: s.kind for s in self.secrets}
        for i, s in enumerate(self.secrets):
            out.extend((f"secrets[{i}].{p}", m) for p, m in _check_secret(s, kinds))
        image_names = {i.name for i in self.images}
        for i, svc in enumerate(self.services):
            if svc.image_name is not None and self.images and svc.image_name not in image_names:
                out.append((f"services[{i}].image_name", f"no image named {svc.image_name!r}"))
            if not (svc.command if isinstance(svc.command, str) else "".join(svc.command)).strip():
                out.append((f"services[{i}].command", "the command is empty"))
            for k, v in svc.environment.items():
                out.extend(_check_refs(v, kinds, f"services[{i}].environment.{k}"))
            cmd = svc.command if isinstance(svc.command, list) else [svc.command]
            for j, arg in enumerate(cmd):
                out.extend(_check_refs(arg, kinds, f"services[{i}].command[{j}]"))
        for i, img in enumerate(self.images):
            for j, f in enumerate(img.injection_files):
                path = f"images[{i}].injection_files[{j}].content"
                out.extend(_check_refs(f.content, kinds, path))
        return out


def _check_secret(s: SecretDef, kinds: Mapping[str, str | None]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if s.import_ is not None:
        if s.kind is not None and s.kind != "explicit" and s.value is not None:
            out.append(("value", "an imported secret has no value of its own"))
        return out
    if s.kind is None:
        out.append(("kind", f"missing; allowed: {', '.join(SECRET_KINDS)}, or `import`"))
        return out
    if s.kind == "explicit" and s.value is None:
        out.append(("value", "an explicit secret needs `value`"))
    if s.kind != "explicit" and s.value is not None:
        out.append(("value", f"only `explicit` secrets take a value; {s.name!r} is {s.kind}"))
    if s.issuer is not None:
        if s.kind not in ("x509", "x509-ca"):
            out.append(("issuer", "only x509 and x509-ca secrets have an issuer"))
        elif s.issuer not in kinds or kinds[s.issuer] not in ("x509-ca", None):
            out.append(("issuer", f"{s.issuer!r} is not an x509-ca secret of this session"))
        elif s.issuer == s.name:
            out.append(("issuer", "a certificate cannot name itself as issuer"))
    if s.private_key is not None:
        if s.kind not in ("x509", "x509-ca"):
            out.append(("private_key", "only x509 and x509-ca secrets take a private_key"))
        elif s.private_key not in kinds or kinds[s.private_key] not in ("private-key", None):
            msg = f"{s.private_key!r} is not a private-key secret of this session"
            out.append(("private_key", msg))
    if s.kind not in ("x509", "x509-ca") and (s.dns or s.common_name or s.valid_for):
        out.append(("dns", "dns, common_name and valid_for apply to x509 and x509-ca secrets"))
    if s.kind not in ("ascii", "binary") and s.size is not None:
        out.append(("size", "size applies to ascii and binary secrets"))
    if s.charset is not None and (s.kind != "ascii" or len(set(s.charset)) < 2):
        msg = "charset applies to ascii secrets and needs two distinct characters"
        out.append(("charset", msg))
    return out


def _check_refs(text: str, kinds: Mapping[str, str | None], path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for ref in find_secret_refs(text):
        if ref.name not in kinds:
            out.append((path, f"{ref.text} names no secret of this session"))
        elif not ref.valid_format:
            out.append((path, f"{ref.text}: unknown format {ref.format!r}"))
    return out


def content_hash(doc: SessionDoc) -> str:
    """SHA-256 over the canonical JSON without `predecessor` (explicit values blanked): equal
    for two versions that say the same; what a mesh apply compares with CAS's current version
    instead of fetching its document."""
    data = doc.canonical()
    data.pop("predecessor", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def session_hash(doc: SessionDoc) -> str:
    """SHA-256 over the canonical JSON (sorted keys); includes `predecessor`, so versions chain."""
    blob = json.dumps(doc.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
