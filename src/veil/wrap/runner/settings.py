"""Every environment variable the wrappers read, declared as data.

This module is copied into images (as `veil_runner.settings`), so it imports only the standard
library. The host side (`veil.wrap.config`) re-exports the same declarations, so that
`veil wrap env`, the generated service manifest and the platform's pre-deploy check all list
exactly what the runners read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COMMON_ENV",
    "FLASK_ENV",
    "KAFKA_ENV",
    "ConfigError",
    "EnvVar",
    "env_for",
    "read_config",
]

VarType = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    description: str
    type: VarType = "str"

    @property
    def required(self) -> bool:
        return self.default is None


class ConfigError(Exception):
    """One or more environment variables are missing or malformed (all named at once)."""


COMMON_ENV: tuple[EnvVar, ...] = (
    EnvVar("VEIL_ENTRYPOINT", None, "The customer's callable: module:function or module:Class."),
    EnvVar("LOG_LEVEL", "INFO", "Log level of the JSON logs: DEBUG, INFO, WARNING, ERROR."),
)

FLASK_ENV: tuple[EnvVar, ...] = (
    *COMMON_ENV,
    EnvVar("HTTP_HOST", "0.0.0.0", "Address gunicorn binds to."),
    EnvVar("HTTP_PORT", "8080", "Port gunicorn binds to.", "int"),
    EnvVar("WEB_CONCURRENCY", "2", "Number of gunicorn worker processes.", "int"),
    EnvVar("GUNICORN_THREADS", "64", "Threads per worker (more than 1 selects gthread, which "
           "keeps slow clients from stalling a worker; 1: sync).", "int"),
    EnvVar("GUNICORN_TIMEOUT", "30", "Seconds before a silent worker is restarted.", "int"),
    EnvVar("MAX_REQUEST_BYTES", "1048576", "Largest accepted request body (413 above).", "int"),
    EnvVar("ACCESS_LOG", "true", "Write one JSON log line per request.", "bool"),
)

KAFKA_ENV: tuple[EnvVar, ...] = (
    *COMMON_ENV,
    EnvVar("KAFKA_BOOTSTRAP_SERVERS", None, "Broker list, host:port[,host:port]."),
    EnvVar("KAFKA_INPUT_TOPIC", None, "Topic the payloads (JSON objects) are read from."),
    EnvVar("KAFKA_OUTPUT_TOPIC", None, "Topic the results go to, keyed as the input."),
    EnvVar("KAFKA_DLQ_TOPIC", None, "Topic failed messages go to, the error in their headers."),
    EnvVar("KAFKA_GROUP_ID", "veil-wrapper", "Consumer group id."),
    EnvVar("KAFKA_AUTO_OFFSET_RESET", "earliest", "Where a new group starts: earliest or latest."),
    EnvVar("KAFKA_SESSION_TIMEOUT_MS", "10000", "Consumer group session timeout.", "int"),
    EnvVar("KAFKA_HEARTBEAT_INTERVAL_MS", "1000", "Consumer group heartbeat interval.", "int"),
    EnvVar("KAFKA_BATCH_SIZE", "500", "Messages taken from the consumer per batch.", "int"),
    EnvVar("KAFKA_MAX_IN_FLIGHT_BATCHES", "8", "Batches produced but not yet committed.", "int"),
    EnvVar("KAFKA_MESSAGE_MAX_BYTES", "1000000",
           "Largest result produced; a larger one goes to the dead-letter topic.", "int"),
    EnvVar("KAFKA_MESSAGE_TIMEOUT_MS", "300000",
           "How long a result may wait for the broker's acknowledgement before the runner "
           "stops (exit 1) without committing it.", "int"),
    EnvVar("KAFKA_ALLOW_AUTO_CREATE_TOPICS", "true",
           "Let the broker create a missing output or dead-letter topic on first use.", "bool"),
    EnvVar("KAFKA_SECURITY_PROTOCOL", "plaintext", "plaintext, ssl, sasl_plaintext or sasl_ssl."),
    EnvVar("KAFKA_SSL_CA_LOCATION", "", "CA bundle that signs the brokers' certificates (ssl)."),
    EnvVar("KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (sasl_*)."),
    EnvVar("KAFKA_SASL_USERNAME", "", "SASL user name (sasl_*)."),
    EnvVar("KAFKA_SASL_PASSWORD", "", "SASL password (sasl_*); best a $$SCONE::...$$ secret."),
    EnvVar("HEALTH_PORT", "8081", "Port of /health, /ready and /metrics (0: off).", "int"),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_for(kind: str) -> tuple[EnvVar, ...]:
    if kind == "flask":
        return FLASK_ENV
    if kind == "kafka":
        return KAFKA_ENV
    raise ConfigError(f"unknown wrapper kind {kind!r}; allowed: flask, kafka")


def read_config(
    spec: Sequence[EnvVar], environ: Mapping[str, str] | None = None
) -> dict[str, str | int | float | bool]:
    """Read and convert every declared variable; report every problem in one error."""
    env = os.environ if environ is None else environ
    values: dict[str, str | int | float | bool] = {}
    problems: list[str] = []
    for var in spec:
        raw = env.get(var.name)
        if raw is None or raw == "":
            if var.default is None:
                problems.append(f"{var.name} is required ({var.description})")
                continue
            raw = var.default
        try:
            values[var.name] = _convert(var, raw)
        except ValueError:
            problems.append(f"{var.name}={raw!r} is not a valid {var.type}")
    if problems:
        raise ConfigError("; ".join(problems))
    return values


def _convert(var: EnvVar, raw: str) -> str | int | float | bool:
    if var.type == "int":
        return int(raw)
    if var.type == "float":
        return float(raw)
    if var.type == "bool":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(raw)
    return raw
