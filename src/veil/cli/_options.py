"""Options of `veil apply`, shared by the genservice and the mesh paths, and the rules that
sconectl's command line brings with it.

sconectl scripts pass the same flags to both kinds of manifest (`--set-version`, `-v...`,
`--mode`); others mean something for one kind only, and a few (`-n`, `-p`) mean different
things for each. A flag Veil cannot honour is refused with one line that says what Veil does
instead — never dropped silently (docs/sconectl.md lists them all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from veil import __version__
from veil.errors import UserError

__all__ = [
    "REFUSED",
    "ApplyOptions",
    "Mode",
    "Output",
    "check_flags_for_kind",
    "refuse_unsupported",
    "version_warning",
]

Mode = Literal["debug", "production"]
Output = Literal["helm_chart", "yaml"]


@dataclass(frozen=True)
class ApplyOptions:
    dry_run: bool = False
    mode: Mode = "production"
    target: Path = Path("target")
    push: bool = True
    verbose: int = 0
    release: str | None = None
    output: Output = "helm_chart"
    # sconectl's: recorded with what the apply produces (image label, chart annotation)
    set_version: str | None = None
    release_version: int | None = None  # a rolling release number of the mesh
    pull: bool = True  # mesh: ask registries for descriptions the local index lacks
    policy_namespace: str | None = None  # mesh: overrides policy.namespace
    helm_template: Path | None = None  # service: the chart templates it carries
    given: frozenset[str] = field(default_factory=frozenset)  # flags named on the line


# sconectl flags Veil does not honour, and what it does instead (one line each).
REFUSED = {
    "--maa": "Veil does not use Microsoft Azure Attestation: its CAS verifies the evidence "
             "itself (SEV-SNP and TDX reports; simulation only in --mode debug)",
    "--otp": "Veil has no one-time passwords: CAS accepts session updates only from the "
             "client key `veil cas init` made (the sessions' CREATOR)",
    "--signing-url": "Veil has no signing service: sessions go over TLS to the CAS pinned by "
                     "its key, from the client key `veil cas init` made",
    "--signing-online": "Veil has no signing service: sessions go over TLS to the CAS pinned "
                        "by its key, from the client key `veil cas init` made",
    "--signing-k8scontext": "Veil has no signing service in Kubernetes: sessions go over TLS "
                            "to the CAS pinned by its key, from the client key `veil cas "
                            "init` made",
}

_SERVICE_ONLY = {"--helm-template": "-h/--helm-template", "--no-push": "--no-push"}
_MESH_ONLY = {
    "--release": "--release", "--release-version": "--release-version",
    "--no-pull": "--no-pull", "--output": "-o/--output", "--policy-namespace":
    "--policy-namespace", "--diff": "--diff",
}


def refuse_unsupported(flags: dict[str, str | bool | None]) -> None:
    """The first refused flag that was given ends the command with its one line."""
    for flag, value in flags.items():
        if value is None or value is False:
            continue
        shown = flag if value is True else f"{flag} {value}"
        raise UserError(f"{shown}: {REFUSED[flag]}")


def check_flags_for_kind(kind: str, file: str, given: frozenset[str]) -> None:
    """A flag of the other kind of manifest is an error naming the kind it belongs to."""
    wrong = _MESH_ONLY if kind == "genservice" else _SERVICE_ONLY
    what = "a mesh (kind: mesh)" if kind == "genservice" else "a service manifest " \
        "(kind: genservice)"
    this = "a service manifest (kind: genservice)" if kind == "genservice" else "a mesh"
    for flag, shown in wrong.items():
        if flag in given:
            raise UserError(f"{shown} applies to {what}; {file} is {this}")


def version_warning(version: str) -> str | None:
    """sconectl's `--set-version` picks the version of SCONE's images. Veil has one runtime,
    its own: `latest` and Veil's version mean what they say; any other version is recorded
    and a warning says it selects nothing."""
    if version in ("latest", __version__):
        return None
    return (f"--set-version {version}: Veil {__version__} has no SCONE {version} images to "
            "select; the version is recorded with what this apply produces, nothing else "
            "changes")


def set_version_default() -> tuple[str | None, str]:
    """`--set-version` when none is given: SCONECTL_VERSION (sconectl's own variable)."""
    v = os.environ.get("SCONECTL_VERSION") or None
    return v, "SCONECTL_VERSION"
