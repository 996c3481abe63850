"""Wrappers: a bare Python repository (`module:function` or `module:Class`) as a Flask HTTP app or
a Kafka consumer/producer app, without the customer writing web or Kafka code.

    prepare_context(repo, "flask", "model:predict", dest)  → WrapResult (files only, no build)
    FLASK_ENV / KAFKA_ENV                                  → what each runner reads from its env

The runtime that ends up in the image is `veil.wrap.runner`, copied as the package `veil_runner`.
"""

from __future__ import annotations

from veil.wrap.check import EntrypointReport, check_entrypoint
from veil.wrap.config import (
    DEFAULT_BASE_IMAGE,
    FLASK_ENV,
    KAFKA_ENV,
    KINDS,
    EnvVar,
    default_base_image,
    env_for,
)
from veil.wrap.context import RUNNER_PACKAGE, WrapResult, merge_requirements, prepare_context
from veil.wrap.service import service_manifest

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "FLASK_ENV",
    "KAFKA_ENV",
    "KINDS",
    "RUNNER_PACKAGE",
    "EntrypointReport",
    "EnvVar",
    "WrapResult",
    "check_entrypoint",
    "default_base_image",
    "env_for",
    "merge_requirements",
    "prepare_context",
    "service_manifest",
]
