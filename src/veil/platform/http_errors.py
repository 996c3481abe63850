"""Errors of the platform's API: one shape, `{"detail": {"reason": ...}}`, never a 500 for bad
input, and never the value sent echoed back (a build arg may be secret).

Validation errors name each field (`body.build_args`, `body.colour: Extra inputs are not
permitted`). JSON bodies are limited in size before they are read whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ERROR_RESPONSES", "MAX_BODY", "BodyLimit", "install"]

MAX_BODY = 1 << 20


class _Detail(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: str


class ErrorOut(BaseModel):
    detail: _Detail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why} for code, why in {
        404: "no such build", 409: "the build has already ended", 413: "body too large",
        415: "the body must be JSON", 422: "invalid request: each problem names its field",
        503: "the job store is unavailable; retry later",
    }.items()
}


def error(status: int, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, **extra}}, status)


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "request"


def _message(e: dict[str, Any]) -> str:
    msg = str(e.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _validation(_req: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    problems = [{"path": _where(e.get("loc", ())), "message": _message(e)} for e in errors]
    reason = "; ".join(f"{p['path']}: {p['message']}" for p in problems) or "invalid request"
    return error(422, reason, problems=problems)


def _http(_req: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "bad request"
    if detail == "There was an error parsing the body":
        detail = "the body is not valid JSON"
    return error(status, str(detail))


def _db(_req: Request, _exc: Exception) -> JSONResponse:
    return error(503, "the job store is unavailable; retry later")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(SQLAlchemyError, _db)
    app.add_middleware(BodyLimit)


class BodyLimit:
    """JSON bodies only, at most MAX_BODY bytes, for the API's POST endpoints that take one."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or \
                scope["path"] != "/containerbuild":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await error(413, f"the body is larger than {self.limit >> 10} KiB")(
                scope, receive, send)
            return
        if ctype.lower() != "application/json":
            await error(415, f"the body must be application/json, not {ctype or 'untyped'}")(
                scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise StarletteHTTPException(413, f"the body is larger than {self.limit >> 10} KiB")
            return msg

        await self.app(scope, limited, send)
