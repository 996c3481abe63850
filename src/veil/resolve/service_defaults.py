"""`apply -f service.yaml --print-defaults`: the image's variables, which have a default and which
a mesh must set.

The output is a mesh `env` section (YAML) that can be pasted into a mesh under `env:` as is: the
service's `global` variables with their defaults, `value: null` where a mesh must supply one.
Its `local` variables are listed as comments: the author fixed them, a mesh cannot change them.
"""

from __future__ import annotations

import json

from veil.manifest.models import GenService

__all__ = ["service_defaults"]


def _scalar(value: str) -> str:
    # JSON strings are valid YAML scalars and keep every character (newlines, `#`, `: `)
    return json.dumps(value, ensure_ascii=False)


def service_defaults(svc: GenService, file: str) -> str:
    b = svc.build
    globals_ = svc.environment.global_
    lines = [f"# variables of service {b.name} ({file}), image {b.to}"]
    if not globals_:
        lines.append("# it declares no global variables: a mesh sets nothing for it")
    lines += ["env:", "  - service: global", "    env:" + ("" if globals_ else " []")]
    for g in globals_:
        lines.append(f"      - name: {g.name}")
        if g.value is None:
            lines.append("        value: null  # required: no default")
        else:
            lines.append(f"        value: {_scalar(g.value)}  # default")
    if svc.environment.local:
        lines.append("# fixed by the service (local), not settable by a mesh: "
                     + ", ".join(v.name for v in svc.environment.local))
    return "\n".join(lines) + "\n"
