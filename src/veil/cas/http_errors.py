"""Malformed requests get a 4xx with a reason, never a 500, and the API describes them.

Every error CAS answers has one shape, `{"detail": {"reason": "..."}}` (validation errors add
`problems`), published in `/openapi.json` for every status an endpoint can return. Reasons name
the field and the rule, never the value sent: a request body may hold secrets.

Bodies are limited in size before they are read to the end (a huge body would otherwise be held
in memory whole), and must be JSON: any other content type is refused before parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ERROR_RESPONSES", "MAX_BODY", "BodyLimit", "ErrorOut", "install"]

# A session with 10,000 secret definitions and its injection files fits many times over.
MAX_BODY = 8 << 20
_JSON_TYPES = ("application/json",)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: str


class ErrorOut(BaseModel):
    detail: ErrorDetail


_WHY = {
    400: "malformed request",
    403: "refused: access policy, evidence or measurement",
    404: "unknown namespace, session, config id or path",
    405: "method not allowed",
    409: "conflict: the predecessor is not the current version",
    413: "request body too large",
    415: "the body must be JSON",
    422: "invalid request or session document",
    503: "the CAS database is unavailable; retry later",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why} for code, why in _WHY.items()
}


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, **extra}}, status)


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _validation(_req: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    # loc and msg only: pydantic's `input` would echo the value sent back (and into logs)
    problems = [
        {"path": _where(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors
    ]
    reason = "; ".join(f"{p['path']}: {p['message']}" for p in problems) or "invalid request"
    return _error(422, reason, problems=problems)


def _http(req: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else ""
    reason = detail if isinstance(detail, str) and detail else _WHY.get(status, "error")
    if status in (404, 405) and reason in ("Not Found", "Method Not Allowed"):
        # the usual cause: a name with `/` in it, which splits the path
        reason = (
            f"no endpoint {req.method} {req.url.path[:200]!r} (see /openapi.json; names are "
            "letters, digits, `_`, `.`, `-`)"
        )
    if reason == "There was an error parsing the body":
        reason = "the body is not valid JSON (UTF-8, nested at most a few hundred levels)"
    return _error(status, reason)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_middleware(BodyLimit, limit=MAX_BODY)


class BodyLimit:
    """Refuse bodies over `limit` bytes (by Content-Length, or while a chunked body streams in)
    and bodies that are not JSON, before the application reads them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            await self._refuse(scope, receive, send, 400, "Content-Length is not a number")
            return
        if length is not None and int(length) > self.limit:
            await self._refuse(scope, receive, send, 413, self._too_large())
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
        if ctype not in _JSON_TYPES:
            reason = f"the body must be application/json, not {ctype or 'untyped'}"
            await self._refuse(scope, receive, send, 415, reason)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    # FastAPI passes HTTPExceptions raised while reading the body through
                    raise StarletteHTTPException(413, self._too_large())
            return msg

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"the request body is larger than CAS accepts ({self.limit >> 20} MiB)"

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, reason: str) -> None:
        await _error(status, reason)(scope, receive, send)
