"""Image references: `host[:port]/path/name[:tag][@sha256:...]`."""

from __future__ import annotations

from dataclasses import dataclass

from veil.errors import UserError
from veil.manifest.imageref import FORM, REFERENCE_RE, reference_problem

__all__ = [
    "DEFAULT_BASE", "DEFAULT_JAVA_BASE", "DEFAULT_JAVA_VERSION", "JAVA_KINDS", "JAVA_VERSIONS",
    "Reference", "default_base", "default_java_base", "java_version", "parse_reference",
]

# the base image of a service without `build.from`: what `veil base create python` pushes
DEFAULT_BASE = "127.0.0.1:5000/veil/python:bookworm"
# the Java versions `veil base create java --version N` makes a base for; `java` alone is 17
JAVA_VERSIONS = ("11", "17", "21")
DEFAULT_JAVA_VERSION = "17"


def default_java_base(version: str) -> str:
    """What `veil base create java --version VERSION` pushes by default."""
    return f"127.0.0.1:5000/veil/java:{version}-bookworm"


DEFAULT_JAVA_BASE = default_java_base(DEFAULT_JAVA_VERSION)


def java_version(kind: str) -> str | None:
    """The Java major version of a `build.kind` (`java21-ubuntu` → 21, `java` → 17); None for
    a kind that is not Java."""
    if not kind.startswith("java"):
        return None
    number = kind[len("java"):].split("-", 1)[0]
    return number or DEFAULT_JAVA_VERSION


# sconectl's Java kinds Veil has a base for: every one but Java 8's (no Java 8 runtime is
# packaged where Veil gets its bases from); an -ubuntu kind is built on the Debian base
JAVA_KINDS = tuple(
    f"java{n}{d}" for n in ("", *JAVA_VERSIONS) for d in ("", "-glibc", "-ubuntu"))


def default_base(kind: str) -> str:
    """The base image of a `build.kind` when `build.from` names none."""
    version = java_version(kind)
    if version and version not in JAVA_VERSIONS:  # the CLI says it first, with file:line
        raise UserError(f"build.kind {kind}: Veil has no Java {version} base",
                        hint="use java11, java17 or java21, or name a base in build.from")
    return default_java_base(version) if version else DEFAULT_BASE


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
