"""The form of an image reference, and what exactly is wrong with one that does not have it.

    REGISTRY[:PORT]/PATH/NAME[:TAG][@sha256:DIGEST]

Veil never guesses a default registry, so the registry host is required. The repository path is
lower-case (the OCI distribution rule); the tag is at most 128 characters.
"""

from __future__ import annotations

import re

__all__ = ["FORM", "REFERENCE_RE", "reference_problem"]

FORM = "REGISTRY[:PORT]/PATH/NAME[:TAG], e.g. 127.0.0.1:5000/demo/hello:1"

REFERENCE_RE = re.compile(
    # a registry host has a dot or a port, or is localhost (else it is a path: "library/x")
    r"^(?P<host>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+(?::\d+)?|[A-Za-z0-9\-]+:\d+"
    r"|localhost|\[[0-9a-fA-F:]+\](?::\d+)?)/"
    r"(?P<repo>[a-z0-9]+(?:[._\-/][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


def reference_problem(ref: str) -> str | None:
    """None for a valid reference; else the first thing that is wrong, in the user's words."""
    if REFERENCE_RE.match(ref):
        return None
    if not ref.strip():
        return "the image reference is empty"
    if any(c.isspace() for c in ref):
        return "an image reference has no spaces"
    head, sep, rest = ref.partition("/")
    if not sep or not rest or not ("." in head or ":" in head or head == "localhost"):
        return "the registry is missing (Veil does not assume a default registry)"
    path = rest.split("@", 1)[0]
    name, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if name != name.lower():
        return "the repository path must be lower-case"
    if ":" in path and not _TAG.fullmatch(tag):
        return "the tag may hold letters, digits, _ . - (at most 128, not starting with . or -)"
    if "@" in rest and not re.fullmatch(r"sha256:[0-9a-f]{64}", rest.split("@", 1)[1]):
        return "the digest must be sha256: and 64 lower-case hex digits"
    return "the repository path may hold lower-case letters, digits and single . _ - / between them"
