"""`python3 -m veil_runner flask|kafka|check`: the command of every wrapped image."""

from __future__ import annotations

import json
import os
import sys

from .entry import check
from .settings import ConfigError, env_for, read_config

USAGE = "usage: python3 -m veil_runner flask | kafka | check MODULE:CALLABLE"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("flask", "kafka", "check"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "check":
        # Run at image build time: a wrong entrypoint fails the build, not the first request.
        spec = argv[1] if len(argv) > 1 else os.environ.get("VEIL_ENTRYPOINT", "")
        sys.path.insert(0, os.getcwd())
        result = check(spec)
        print(json.dumps(result, sort_keys=True))
        return 0 if result["ok"] else 1
    try:
        read_config(env_for(argv[0]))
    except ConfigError as err:
        print(f"veil_runner: configuration error: {err}", file=sys.stderr)
        return 2
    if argv[0] == "kafka":
        from .kafka_app import run

        return run()
    pkg = __package__ or "veil_runner"
    # exec: gunicorn becomes the process that receives SIGTERM from the container runtime.
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-c", f"python:{pkg}.gunicorn_conf",
                              f"{pkg}.flask_app:create_app()"])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
