"""Environment by phase: every variable the program needs against what supplies it.

Needs come from the program's source (`envscan`) and from the wrapper's declarations; supplies
come from three phases, lowest precedence first:

    platform   what the platform and the chart inject into every pod (POD_NAME, AWS_* ...)
    build      the image's configuration (`ENV` at build time), read from the registry
    deploy     the deployment's `env`

A needed variable no phase supplies is an error unless the code has a default (a warning: the
default may not be what production wants; the wrapper's own documented defaults are notes).
A variable two phases set differently is a warning naming both. Values are never shown: they
may be credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from veil.deploy.envscan import Read
from veil.wrap.config import EnvVar

__all__ = ["PHASES", "PLATFORM_ENV", "EnvRow", "EnvTable", "env_table"]

PHASES = ("platform", "build", "deploy")
Status = Literal["ok", "missing", "default", "overridden", "unused"]

# What every pod gets without the deployment asking: the wrapper chart's downward-API variables,
# Kubernetes' service links, and the variables EKS's pod identity webhook adds for the role.
PLATFORM_ENV: Mapping[str, str] = {
    "POD_NAME": "the pod's name (downward API, wrapper chart)",
    "POD_NAMESPACE": "the team namespace (downward API, wrapper chart)",
    "VEIL_APP": "the deployment's app name (wrapper chart)",
    "VEIL_TEAM": "the team (wrapper chart)",
    "KUBERNETES_SERVICE_HOST": "Kubernetes",
    "KUBERNETES_SERVICE_PORT": "Kubernetes",
    "AWS_ROLE_ARN": "EKS pod identity webhook (ServiceAccount role annotation)",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "EKS pod identity webhook",
    "AWS_REGION": "EKS pod identity webhook",
    "AWS_DEFAULT_REGION": "EKS pod identity webhook",
    "AWS_STS_REGIONAL_ENDPOINTS": "EKS pod identity webhook",
}


@dataclass
class EnvRow:
    name: str
    needed_by: list[str] = field(default_factory=list)  # "model.py:12 (os.getenv)", "wrapper"
    required: bool = False  # some reader has no default
    phases: list[str] = field(default_factory=list)  # which phases supply it
    status: Status = "ok"
    note: str = ""


@dataclass
class EnvTable:
    rows: list[EnvRow]
    errors: list[str]
    warnings: list[str]
    unknown_reads: list[Read]  # computed names


def env_table(reads: Iterable[Read], wrapper: Iterable[EnvVar], *,
              platform: Mapping[str, str], image_env: Mapping[str, str],
              deploy_env: Mapping[str, str]) -> EnvTable:
    rows: dict[str, EnvRow] = {}
    wrapper_defaults: set[str] = set()
    unknown: list[Read] = []
    code_required: set[str] = set()
    for r in reads:
        if r.name is None:
            unknown.append(r)
            continue
        row = rows.setdefault(r.name, EnvRow(r.name))
        row.needed_by.append(f"{r.file}:{r.line} ({r.how})")
        if not r.has_default:
            row.required = True
            code_required.add(r.name)
    for var in wrapper:
        row = rows.setdefault(var.name, EnvRow(var.name))
        row.needed_by.append("wrapper" + ("" if var.required else f" (default {var.default})"))
        if var.required:
            row.required = True
        else:
            wrapper_defaults.add(var.name)
    supplies = {"platform": platform, "build": image_env, "deploy": deploy_env}
    errors: list[str] = []
    warnings: list[str] = []
    for name in sorted(rows):
        row = rows[name]
        row.phases = [p for p in PHASES if name in supplies[p]]
        if not row.phases:
            if row.required:
                row.status = "missing"
                errors.append(f"{name} is read by {', '.join(row.needed_by)} and supplied by no "
                              "phase (platform, build, deploy); set it in the deployment's env")
            else:
                row.status = "default"
                if name in wrapper_defaults and name not in code_required and not any(
                        not n.startswith("wrapper") for n in row.needed_by):
                    row.note = "wrapper default"
                else:
                    warnings.append(f"{name} is supplied by no phase; the code's default applies "
                                    f"({', '.join(row.needed_by)})")
        conflict = _conflict(name, row.phases, supplies)
        if conflict:
            row.status = "overridden"
            row.note = conflict
            warnings.append(f"{name}: {conflict}")
    return EnvTable([rows[n] for n in sorted(rows)], errors, warnings, unknown)


def _conflict(name: str, phases: list[str], supplies: Mapping[str, Mapping[str, str]]) -> str:
    if len(phases) < 2:
        return ""
    if "platform" in phases:
        others = [p for p in phases if p != "platform"]
        return (f"set by the platform and at {' and '.join(others)}; the platform's value is "
                "replaced, which may break what it provides")
    build, deploy = supplies["build"][name], supplies["deploy"][name]
    if build != deploy:
        return "set at build (image) and at deploy with different values; the deploy value wins"
    return ""
