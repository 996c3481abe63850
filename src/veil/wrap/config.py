"""The wrappers' configuration, as data: what each runner reads from its environment.

The declarations live in the runner (`runner/settings.py`, copied into images) and are
re-exported here, so the host side lists exactly what the image reads.
"""

from __future__ import annotations

import os

from veil.wrap.runner.settings import COMMON_ENV, FLASK_ENV, KAFKA_ENV, EnvVar, env_for

__all__ = [
    "COMMON_ENV",
    "DEFAULT_BASE_IMAGE",
    "FLASK_ENV",
    "KAFKA_ENV",
    "KINDS",
    "EnvVar",
    "default_base_image",
    "env_for",
]

KINDS = ("flask", "kafka")

# What `veil base create python` pushes to the local registry.
DEFAULT_BASE_IMAGE = "127.0.0.1:5000/veil/python:bookworm"


def default_base_image() -> str:
    """`$VEIL_BASE_IMAGE` (e.g. the image `veil base create python` pushed), else a Python image."""
    return os.environ.get("VEIL_BASE_IMAGE") or DEFAULT_BASE_IMAGE
