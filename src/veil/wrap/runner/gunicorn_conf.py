"""gunicorn settings for the Flask wrapper, all from the declared environment variables."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from .logs import JsonFormatter
from .settings import FLASK_ENV, read_config

_cfg = read_config(FLASK_ENV)

bind = f"{_cfg['HTTP_HOST']}:{_cfg['HTTP_PORT']}"
workers = int(_cfg["WEB_CONCURRENCY"])
threads = int(_cfg["GUNICORN_THREADS"])
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(_cfg["GUNICORN_TIMEOUT"])
graceful_timeout = timeout
control_socket_disable = True  # one shared socket path would clash between instances
accesslog = None  # the app writes its own structured access log, with the request id
errorlog = "-"
loglevel = str(_cfg["LOG_LEVEL"]).lower()
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
    },
}

# Several worker processes: prometheus-client keeps each worker's numbers in files of one
# directory so that /metrics, answered by any worker, reports the sum. It must be set before a
# worker imports prometheus_client, i.e. here in the master, before the fork.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="veil-metrics-")


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
