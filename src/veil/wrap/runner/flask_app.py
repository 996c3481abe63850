"""The Flask wrapper: `create_app()` is the WSGI app gunicorn serves.

    POST /predict        JSON object in, the customer's result as JSON out
    GET  /health         200 while the worker lives (500 if load() failed)
    GET  /ready          200 once load() has finished, 503 before
    GET  /metrics        Prometheus text (all gunicorn workers together)
    GET  /openapi.json   the API above as OpenAPI 3.0

Every error is JSON `{"error", "message", "request_id"}` with its status code; exceptions in the
customer's code (`SystemExit` included) give a 500 without any detail to the client and the full
traceback in the log; a result with NaN or Infinity is not JSON (500), a body nested deeper than
the parser goes is a 400.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from werkzeug.exceptions import HTTPException

from .entry import Model
from .logs import AccessLog, setup_logging
from .settings import FLASK_ENV, read_config

__all__ = ["create_app"]

log = logging.getLogger("veil.wrapper")
ACCESS_LOGGER = "veil.wrapper.access"

_JSON = "application/json"


def _metrics_registry() -> CollectorRegistry | None:
    """In gunicorn (several workers), /metrics must add up every worker's numbers."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.errors = Counter(
            "veil_predict_errors", "Failed predict requests by cause.", ["cause"],
            registry=self.registry,
        )
        # Its _count, by status, is the number of requests: one update per request, not two.
        self.latency = Histogram(
            "veil_predict_duration_seconds", "Time spent answering predict requests, by HTTP "
            "status.", ["status"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.ok = self.latency.labels("200")  # bound once: the hot path skips the label lookup
        self.exposition = _metrics_registry() or self.registry


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")


def _request_id() -> str:
    """The caller's X-Request-Id if it is a plain token (so logs need no escaping), else new."""
    given: str = request.environ.get("HTTP_X_REQUEST_ID", "")
    if given and len(given) <= 128 and _ID_CHARS.issuperset(given):
        return given
    return os.urandom(16).hex()  # as unique as a uuid4, at a fraction of the cost


def _openapi(spec: str, description: str, limit: int) -> dict[str, Any]:
    err = {"$ref": "#/components/schemas/Error"}

    def resp(text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"description": text}
        if schema is not None:
            body["content"] = {_JSON: {"schema": schema}}
        return body

    return {
        "openapi": "3.0.3",
        "info": {"title": spec, "version": "1", "description": description},
        "paths": {
            "/predict": {"post": {
                "summary": f"Call {spec} with the request body",
                "requestBody": {"required": True, "content": {_JSON: {"schema": {
                    "type": "object", "description": f"at most {limit} bytes"}}}},
                "responses": {
                    "200": resp("The result", {"type": "object"}),
                    "400": resp("Body is not a JSON object", err),
                    "413": resp("Body too large", err),
                    "500": resp("The model failed", err),
                    "503": resp("The model is not loaded yet", err),
                },
            }},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": resp("alive")}}},
            "/ready": {"get": {"summary": "Readiness (after load())", "responses": {
                "200": resp("ready"), "503": resp("loading", err)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": resp("text exposition")}}},
        },
        "components": {"schemas": {"Error": {"type": "object", "properties": {
            "error": {"type": "string"}, "message": {"type": "string"},
            "request_id": {"type": "string"}}}}},
    }


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    cfg = read_config(FLASK_ENV, environ)
    setup_logging(str(cfg["LOG_LEVEL"]))
    model = Model(str(cfg["VEIL_ENTRYPOINT"]))
    metrics = _Metrics()
    access_log = bool(cfg["ACCESS_LOG"]) and logging.getLogger(ACCESS_LOGGER).isEnabledFor(
        logging.INFO)
    access = AccessLog(ACCESS_LOGGER)
    limit = int(cfg["MAX_REQUEST_BYTES"])
    state: dict[str, str | None] = {"load_error": None}
    worker = os.getpid()  # create_app runs in each gunicorn worker, after the fork

    app = Flask("veil_runner")
    openapi = json.dumps(_openapi(model.spec, model.description, limit), sort_keys=True)

    def load() -> None:
        try:
            model.load()
            log.info("model ready", extra={"entrypoint": model.spec})
        except Exception as err:
            state["load_error"] = f"{type(err).__name__}: {err}"
            log.error("load() failed", exc_info=True, extra={"entrypoint": model.spec})

    # load() may take minutes (big models): run it beside the server so /health answers meanwhile.
    threading.Thread(target=load, name="veil-load", daemon=True).start()

    def error(status: int, code: str, message: str, rid: str) -> Response:
        body = json.dumps({"error": code, "message": message, "request_id": rid})
        return Response(body, status, {"X-Request-Id": rid}, mimetype=_JSON)

    def finish(rid: str, status: int, started: float, cause: str | None = None) -> None:
        elapsed = time.perf_counter() - started
        (metrics.ok if status == 200 else metrics.latency.labels(str(status))).observe(elapsed)
        if cause:
            metrics.errors.labels(cause).inc()
        if access_log:
            access.write(rid, status, worker, elapsed * 1000)

    def too_large(rid: str, started: float) -> Response:
        finish(rid, 413, started, "too_large")
        return error(413, "request_entity_too_large", f"request body larger than {limit} bytes",
                     rid)

    @app.post("/predict")
    def predict() -> Response:
        started = time.perf_counter()
        rid = _request_id()
        if not model.ready:
            finish(rid, 503, started, "not_ready")
            return error(503, "not_ready", "the model is not loaded yet", rid)
        environ = request.environ
        declared = environ.get("CONTENT_LENGTH")
        if declared and declared.isdigit() and int(declared) > limit:
            return too_large(rid, started)
        # Read the server's input directly, at most one byte over the limit (a chunked body has
        # no length to check beforehand); cheaper than werkzeug's limited stream.
        data = environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            return too_large(rid, started)
        try:
            payload = json.loads(data)
        except ValueError as err:
            finish(rid, 400, started, "bad_json")
            return error(400, "bad_request", f"request body is not valid JSON: {err}", rid)
        except RecursionError:
            finish(rid, 400, started, "bad_json")
            return error(400, "bad_request", "request body is nested too deeply", rid)
        if not isinstance(payload, dict):
            finish(rid, 400, started, "bad_json")
            return error(400, "bad_request", "request body must be a JSON object", rid)
        try:
            result = model.predict(payload)
        except (Exception, SystemExit):
            # SystemExit too: sys.exit() in the customer's code must not take the worker down
            # mid-request (gunicorn would answer with its HTML error page)
            log.error("predict raised", exc_info=True, extra={"request_id": rid})
            finish(rid, 500, started, "exception")
            return error(500, "internal_error", "the model raised an exception", rid)
        try:
            # allow_nan=False: NaN and Infinity are not JSON, and clients' parsers reject them
            body = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            log.error("predict returned a value that is not JSON", exc_info=True,
                      extra={"request_id": rid, "type": type(result).__name__})
            finish(rid, 500, started, "bad_result")
            return error(500, "internal_error", "the model returned a value that is not JSON", rid)
        finish(rid, 200, started)
        return Response(body, 200, {"X-Request-Id": rid}, mimetype=_JSON)

    @app.get("/health")
    def health() -> Response:
        if state["load_error"]:
            return Response(json.dumps({"status": "failed"}), 500, mimetype=_JSON)
        return Response('{"status": "ok"}', 200, mimetype=_JSON)

    @app.get("/ready")
    def ready() -> Response:
        if model.ready:
            return Response('{"status": "ready"}', 200, mimetype=_JSON)
        return Response('{"status": "loading"}', 503, mimetype=_JSON)

    @app.get("/metrics")
    def metrics_view() -> Response:
        return Response(generate_latest(metrics.exposition), 200, mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    def openapi_view() -> Response:
        return Response(openapi, 200, mimetype=_JSON)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        rid = _request_id()
        status = err.code or 500
        message = err.description or err.name
        return error(status, err.name.lower().replace(" ", "_"), message, rid)

    return app
