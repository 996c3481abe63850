"""Structured logs: one JSON object per line on stderr.

Fields: `ts` (UTC, ISO 8601), `level`, `logger`, `msg`, whatever the caller passes in `extra`
(`request_id`, `status`, `duration_ms`, ...), and `traceback` when an exception is logged. The
formatter is kept lean because the Flask wrapper writes one line per request.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["AccessLog", "JsonFormatter", "setup_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str) -> None:
    """Route every logger (ours, the customer's, gunicorn's, librdkafka's) to JSON on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")


class AccessLog:
    """One JSON line per request, in the same shape as the other logs, written straight to the
    stream: the logging module's record machinery (caller lookup, thread and process names)
    and a generic JSON encoder would cost more than the whole request of a small model. The
    caller guarantees `request_id` needs no JSON escaping (see flask_app._request_id)."""

    def __init__(self, logger: str, stream: TextIO | None = None) -> None:
        self._head = f'"level": "INFO", "logger": {json.dumps(logger)}, "msg": "predict", '
        self._stream = stream
        self._lock = threading.Lock()  # gthread workers: one line at a time
        self._second = -1
        self._stamp = ""
        try:
            self._fd: int | None = (stream or sys.stderr).fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # not a real file (e.g. captured by a test runner)

    def write(self, request_id: str, status: int, worker: int, duration_ms: float) -> None:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = (
            f'{{"ts": "{self._stamp}.{int(t % 1 * 1000):03d}Z", {self._head}'
            f'"request_id": "{request_id}", "status": {status}, "worker": {worker}, '
            f'"duration_ms": {duration_ms:.3f}}}\n'
        )
        stream = self._stream or sys.stderr
        with self._lock:
            if self._fd is None:
                stream.write(line)
            else:
                # One write(2) of one line: atomic on a pipe (< PIPE_BUF), and no text buffer
                # (stderr is line-buffered, so nothing of other writers waits in it).
                os.write(self._fd, line.encode())
