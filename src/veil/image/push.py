"""Pushing a locally built image to its registry; the pushed manifest digest is the result."""

from __future__ import annotations

import tempfile
from pathlib import Path

from veil.image.reference import parse_reference
from veil.image.tools import run_tool, tls_flag

__all__ = ["check_registry", "push_image"]


def push_image(image: str) -> str:
    ref = parse_reference(image)
    with tempfile.TemporaryDirectory(prefix="veil-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        run_tool(
            ["buildah", "push", "--quiet", *tls_flag(image), "--digestfile", str(digestfile),
             image, f"docker://{image}"],
            what=f"pushing {image} to the registry {ref.host} failed",
            hint=f"check that the registry {ref.host} is running and reachable "
            "(or build with --no-push to keep the image local)",
        )
        return digestfile.read_text().strip()


def check_registry(image: str) -> None:
    """Fail fast, before building, when nothing listens where the registry of `image` should be."""
    import socket

    from veil.errors import OperationalError

    ref = parse_reference(image)
    host, _, port = ref.host.rpartition(":") if ":" in ref.host.lstrip("[") else (ref.host, "", "")
    try:
        with socket.create_connection((host.strip("[]"), int(port or 443)), timeout=10):
            pass
    except OSError as err:
        raise OperationalError(
            f"pushing {image} to the registry {ref.host} failed: the registry does not answer "
            f"({err.strerror or err})",
            hint=f"check that the registry {ref.host} is running and reachable "
            "(or build with --no-push to keep the image local)",
        ) from None
