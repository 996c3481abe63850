"""What `veil env explain` and `apply --dry-run` show of an environment: values with secrets masked.

A `$$SCONE::x$$` reference is shown as written (it is a pointer, resolved only inside CAS). A
literal value is masked when its name says it is a secret: mesh files are read by admins, and
whatever Veil prints ends up in CI logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from veil.resolve.env import ResolvedService

__all__ = ["EnvRow", "env_rows", "looks_secret", "masked"]

_SECRET_NAME = re.compile(r"pass|secret|token|private|credential|api_?key|(^|_)key($|_)", re.I)
MASK = "********"


# names of Kubernetes secrets, not secret values
_NOT_SECRET = frozenset({"imagepullsecrets", "imagepullsecret", "session_secrets"})


def looks_secret(name: str) -> bool:
    return name.lower() not in _NOT_SECRET and bool(_SECRET_NAME.search(name))


def masked(name: str, value: str, secret_refs: tuple[str, ...] = ()) -> str:
    if secret_refs:
        return value
    return MASK if looks_secret(name) and value else value


@dataclass(frozen=True)
class EnvRow:
    name: str
    value: str  # masked
    origin: str
    program: bool  # handed to the program, or only to templates and Helm


def env_rows(service: ResolvedService) -> list[EnvRow]:
    return [
        EnvRow(name, masked(name, v.value, v.secret_refs), str(v.origin),
               name in service.program_env)
        for name, v in sorted(service.env.items())
    ]
