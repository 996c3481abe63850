"""Image references: `host[:port]/path/name[:tag][@sha256:...]`."""

from __future__ import annotations

from dataclasses import dataclass

from veil.errors import UserError
from veil.manifest.imageref import FORM, REFERENCE_RE, reference_problem

__all__ = [
    "DEFAULT_BASE", "DEFAULT_JAVA_BASE", "JAVA_KINDS", "Reference", "default_base",
    "parse_reference",
]

# the base image of a service without `build.from`: what `veil base create python` pushes
DEFAULT_BASE = "127.0.0.1:5000/veil/python:bookworm"
DEFAULT_JAVA_BASE = "127.0.0.1:5000/veil/java:17-bookworm"  # `veil base create java`
# sconectl's Java kinds Veil has a base for (other major versions need a JRE bookworm lacks)
JAVA_KINDS = ("java", "java-glibc", "java17", "java17-glibc")


def default_base(kind: str) -> str:
    """The base image of a `build.kind` when `build.from` names none."""
    return DEFAULT_JAVA_BASE if kind.startswith("java") else DEFAULT_BASE


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the registry API takes after /manifests/: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.host, self.repository, None, digest)


def parse_reference(ref: str, *, field: str = "image") -> Reference:
    """Parse a fully qualified reference (Veil never guesses a default registry)."""
    m = REFERENCE_RE.match(ref.strip())
    if not m or "$" in ref:
        why = "it holds a shell variable" if "$" in ref else reference_problem(ref.strip())
        hint = "did you run envsubst?" if "$" in ref else f"expected {FORM}"
        raise UserError(f"{field} {ref!r} is not a fully qualified image reference: {why}",
                        hint=hint)
    tag = m.group("tag")
    if tag is None and m.group("digest") is None:
        tag = "latest"
    return Reference(m.group("host"), m.group("repo"), tag, m.group("digest"))
