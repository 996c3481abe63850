"""Names Helm accepts: release names (the default one is made from the mesh's namespace)."""

from __future__ import annotations

import re

__all__ = ["RELEASE_RE", "release_name"]

# Helm's rule for release names (a DNS subdomain of at most 53 characters)
RELEASE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def release_name(namespace: str) -> str:
    """The default release: the namespace in the form Helm accepts (`my_App` → `my-app`)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", namespace.lower())
    name = re.sub(r"-*\.-*", ".", name).strip(".-")[:53].strip(".-")
    return name or "veil"
