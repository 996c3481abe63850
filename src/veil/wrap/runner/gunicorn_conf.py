"""gunicorn settings for the Flask wrapper, all from the declared environment variables."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from gunicorn.glogging import Logger

from .logs import JsonFormatter
from .settings import FLASK_ENV, read_config

_cfg = read_config(FLASK_ENV)

bind = f"{_cfg['HTTP_HOST']}:{_cfg['HTTP_PORT']}"
workers = int(_cfg["WEB_CONCURRENCY"])
threads = int(_cfg["GUNICORN_THREADS"])
# gthread: a client that sends its headers or body a byte at a time holds one thread, not the
# whole worker (a sync worker reads the request itself: 8 such clients stalled 2 workers).
# 64 threads per worker leave room for dozens of them; threads start only when needed.
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(_cfg["GUNICORN_TIMEOUT"])
graceful_timeout = timeout
control_socket_disable = True  # one shared socket path would clash between instances
accesslog = None  # the app writes its own structured access log, with the request id
errorlog = "-"
loglevel = str(_cfg["LOG_LEVEL"]).lower()


class JsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's own log lines as JSON, like everything else the wrapper logs.

    Not done with `logconfig_dict`: any logging configuration makes gunicorn build its access-log
    data for every request (about 60 us of CPU each), even with no access log configured.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        pass  # the app writes its own access log, with the request id


logger_class = JsonLogger

# Several worker processes: prometheus-client keeps each worker's numbers in files of one
# directory so that /metrics, answered by any worker, reports the sum. It must be set before a
# worker imports prometheus_client, i.e. here in the master, before the fork.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    # In memory (tmpfs) where there is one: every metric update writes to a mapped file.
    _shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="veil-metrics-", dir=_shm)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
