"""The `tolerance` string of a mesh's CAS entry: flags in the style of `scone cas attest`.

    --only_for_testing-trust-any       accept any CAS (no key pinning, no attestation of CAS)
    --only_for_testing-debug           accept a CAS running in debug mode
    --only_for_testing-ignore-signer   accept a CAS whose signer is not the expected one
    -C / --accept-configuration-needed   tolerate: insecure-configuration
    -G / --accept-group-out-of-date      tolerate: outdated-tcb
    -S / --accept-sw-hardening-needed    tolerate: software-hardening-needed
    --software-hardening-needed          the same as -S

Veil honours `trust-any` (the CAS key is not required) and turns the -C/-G/-S family into the
session's `security.attestation.tolerate` list. Everything else is kept and warned about, so a
manifest written for sconectl still loads.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

__all__ = ["Tolerance", "parse_tolerance"]

_TOLERATE = {
    "-C": "insecure-configuration",
    "--accept-configuration-needed": "insecure-configuration",
    "-G": "outdated-tcb",
    "--accept-group-out-of-date": "outdated-tcb",
    "-S": "software-hardening-needed",
    "--accept-sw-hardening-needed": "software-hardening-needed",
    "--software-hardening-needed": "software-hardening-needed",
}


@dataclass(frozen=True)
class Tolerance:
    trust_any: bool = False
    debug: bool = False
    ignore_signer: bool = False
    tolerate: tuple[str, ...] = ()
    unknown: tuple[str, ...] = field(default=())

    @property
    def testing_only(self) -> bool:
        """True when any flag is one that must never be used in production."""
        return self.trust_any or self.debug or self.ignore_signer


def parse_tolerance(text: str | None) -> Tolerance:
    """Parse the flags; unrecognised ones land in `unknown` (the caller warns)."""
    if not text:
        return Tolerance()
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    trust_any = debug = ignore_signer = False
    tolerate: list[str] = []
    unknown: list[str] = []
    for w in words:
        # `-CGS` is the same as `-C -G -S`, as in any getopt-style command line
        if w.startswith("-") and not w.startswith("--") and len(w) > 2:
            flags = [f"-{c}" for c in w[1:]]
        else:
            flags = [w]
        for f in flags:
            if f == "--only_for_testing-trust-any":
                trust_any = True
            elif f == "--only_for_testing-debug":
                debug = True
            elif f == "--only_for_testing-ignore-signer":
                ignore_signer = True
            elif f in _TOLERATE:
                if _TOLERATE[f] not in tolerate:
                    tolerate.append(_TOLERATE[f])
            else:
                unknown.append(f)
    return Tolerance(trust_any, debug, ignore_signer, tuple(sorted(tolerate)), tuple(unknown))
