"""What a registry says about an image right now: its digest, its build-time env, its labels.

The pre-deploy check reads these from the registry itself, never from Veil's own records: a
record says what was pushed, the registry says what a pod would pull.

    Images              the capability (a Protocol)
    RegistryImages      over the OCI distribution API (`veil.image.registry`)
    MemoryImages        in memory, for unit tests of the pure core
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from veil.errors import OperationalError, UserError
from veil.image.reference import Reference, parse_reference
from veil.image.registry import NotFound, Registry

__all__ = ["ROLE_LABELS", "ImageFacts", "Images", "MemoryImages", "NotInRegistry",
           "RegistryImages"]

# The image label a platform build (`POST /containerbuild`) sets for the AWS role.
ROLE_LABELS = ("io.veil.platform.aws-role-arn",)


class NotInRegistry(UserError):
    """The registry has no such tag or digest."""


@dataclass(frozen=True)
class ImageFacts:
    reference: Reference  # as the deployment names it
    digest: str  # what the tag (or digest) resolves to now
    env: Mapping[str, str] = field(default_factory=dict)  # the image config's Env
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def pinned(self) -> str:
        """What the chart must pull: repository@digest."""
        return f"{self.reference.name}@{self.digest}"

    @property
    def role_arn(self) -> str | None:
        return next((self.labels[k] for k in ROLE_LABELS if self.labels.get(k)), None)


class Images(Protocol):
    def facts(self, ref: Reference) -> ImageFacts:
        """Digest, env and labels of the image `ref` names (tag, else digest)."""

    def digest(self, ref: Reference) -> str:
        """The digest `ref` resolves to (the manifest only)."""


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (config.get("config") or {}).get("Env") or []:
        name, _, value = str(item).partition("=")
        out[name] = value
    return out


def _missing(ref: Reference) -> NotInRegistry:
    what = f"tag {ref.tag!r}" if ref.tag and not ref.digest else f"digest {ref.digest}"
    return NotInRegistry(f"{ref}: the registry {ref.host} has no {what} in {ref.repository}",
                         hint="push the image first, or correct the reference")


class RegistryImages:
    """The real registry, one HTTP client per repository for the life of this object."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._clients: dict[str, Registry] = {}

    def _registry(self, ref: Reference) -> Registry:
        if ref.name not in self._clients:
            self._clients[ref.name] = Registry(ref, timeout=self.timeout)
        return self._clients[ref.name]

    def close(self) -> None:
        for reg in self._clients.values():
            reg.client.close()
        self._clients.clear()

    def __enter__(self) -> RegistryImages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def facts(self, ref: Reference) -> ImageFacts:
        try:
            digest, config = self._registry(ref).config(ref.reference)
        except NotFound:
            raise _missing(ref) from None
        except (KeyError, ValueError, TypeError) as err:
            raise OperationalError(f"{ref}: the registry returned an image Veil cannot read "
                                   f"({err})") from None
        labels = (config.get("config") or {}).get("Labels") or {}
        return ImageFacts(ref, digest, _env(config),
                          {str(k): str(v) for k, v in labels.items()})

    def digest(self, ref: Reference) -> str:
        try:
            digest, _ = self._registry(ref).manifest(ref.reference)
        except NotFound:
            raise _missing(ref) from None
        return digest


class MemoryImages:
    """Images as a dict `repository:tag` or `repository@digest` → facts; for unit tests."""

    def __init__(self, images: Mapping[str, ImageFacts] | None = None) -> None:
        self.images = dict(images or {})
        self.lookups = 0

    def add(self, ref: str, digest: str, env: Mapping[str, str] | None = None,
            labels: Mapping[str, str] | None = None) -> ImageFacts:
        r = parse_reference(ref)
        facts = ImageFacts(r, digest, dict(env or {}), dict(labels or {}))
        self.images[f"{r.name}:{r.tag}"] = facts
        self.images[f"{r.name}@{digest}"] = facts
        return facts

    def facts(self, ref: Reference) -> ImageFacts:
        self.lookups += 1
        key = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
        if key not in self.images:
            raise _missing(ref)
        found = self.images[key]
        return ImageFacts(ref, found.digest, found.env, found.labels)

    def digest(self, ref: Reference) -> str:
        return self.facts(ref).digest
