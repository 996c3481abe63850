"""Image references: `host[:port]/path/name[:tag][@sha256:...]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from veil.errors import UserError

__all__ = ["Reference", "parse_reference"]

_REF = re.compile(
    r"^(?P<host>[A-Za-z0-9.\-]+(?::\d+)?|\[[0-9a-fA-F:]+\](?::\d+)?)/"
    r"(?P<repo>[a-z0-9]+(?:[._\-/][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


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
    m = _REF.match(ref.strip())
    if not m or "$" in ref:
        hint = "did you run envsubst?" if "$" in ref else (
            "expected REGISTRY[:PORT]/PATH/NAME[:TAG], e.g. 127.0.0.1:5000/demo/hello:1"
        )
        raise UserError(f"{field} {ref!r} is not a fully qualified image reference", hint=hint)
    tag = m.group("tag")
    if tag is None and m.group("digest") is None:
        tag = "latest"
    return Reference(m.group("host"), m.group("repo"), tag, m.group("digest"))
