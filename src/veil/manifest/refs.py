"""References to CAS secrets inside values and injection files.

Forms (all sconectl accepts):
    $$SCONE::name$$              the secret's value (default format)
    $$SCONE::name:format$$       format: crt, privatekey, chain, key, hex, base64, pem, ...
    $$SCONE::name.crt$$          legacy dot forms: .crt .key .chain
    $$SCONE::name.privatekey$$

These are only ever substituted inside CAS, at provisioning time. Everywhere else they are data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FORMATS", "SECRET_REF_RE", "SecretRef", "find_secret_refs"]

FORMATS = frozenset(
    {"crt", "cert", "privatekey", "key", "chain", "hex", "base64", "pem", "der", "publickey", "raw"}
)
_LEGACY_DOT = ("crt", "key", "chain", "privatekey", "pem", "hex", "base64")

SECRET_REF_RE = re.compile(r"\$\$SCONE::(?P<body>[^$\s]+?)\$\$")


@dataclass(frozen=True)
class SecretRef:
    text: str  # the whole reference as written, `$$SCONE::...$$`
    name: str
    format: str | None
    start: int
    end: int

    @property
    def valid_format(self) -> bool:
        return self.format is None or self.format in FORMATS


def _split(body: str) -> tuple[str, str | None]:
    if ":" in body:
        name, fmt = body.split(":", 1)
        return name, fmt
    for suffix in _LEGACY_DOT:
        if body.endswith("." + suffix):
            return body[: -len(suffix) - 1], suffix
    return body, None


def find_secret_refs(text: str) -> list[SecretRef]:
    """Every `$$SCONE::...$$` reference in `text`, in order."""
    out = []
    for m in SECRET_REF_RE.finditer(text):
        name, fmt = _split(m.group("body"))
        out.append(SecretRef(m.group(0), name, fmt, m.start(), m.end()))
    return out
