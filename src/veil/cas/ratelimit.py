"""Limits on what anonymous callers can make CAS write, per source address.

Two requests need no identity and still wrote: a nonce request for a config id that names no
service (one audit entry each) and client registration (a client row and an audit entry each).
A flood of them grew the database by hundreds of rows a second, and its refusals competed
with legitimate attestations for the event loop, the thread pool and the database. So, per
source address and per worker process:
- `Bucket`: a token bucket; a source over its rate gets 429 before anything is read or written;
- `Aggregator`: refusals of one kind from one source are audited once per `window` seconds;
  the entry that follows says how many were answered without an entry of their own
  (`repeated`), so the log still counts every one; at most `max_entries` sources a window get
  entries of their own, the rest share one (a flood from many addresses cannot write either);
- `Gate`: the ASGI middleware that answers a source over its rate with 429 before routing,
  body validation, a thread or the database, so legitimate attestations (nonces for known
  config ids, provisioning) never wait behind flood work. What a refused request still costs
  is its TLS record and its HTTP parse — on a busy machine that alone took the CPU from
  legitimate requests: a client that waits for each answer before sending the next simply
  sent faster the cheaper the refusals were. So the 429 is held back `hold` seconds (a sleep
  on the event loop, no thread; at most `max_held` at a time per worker, beyond that answered
  at once): a flooder gets about one refusal per connection and `hold`, and clients that
  honour Retry-After lose nothing.

The source is the TCP peer: behind a proxy that is the proxy, and the limits apply to all its
clients together (put the limits there instead). Each worker process keeps its own counts, so
a CAS with W workers allows W times the rates below.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Aggregator", "Bucket", "Gate", "Hold", "Limited"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Limited(Exception):
    """A source went over its rate: answered 429 with `retry_after` seconds."""

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        self.reason = f"too many {what} from this address; retry in {self.retry_after} s"
        super().__init__(self.reason)


class Bucket:
    """`rate` requests a second per source, bursts of `burst`; at most `sources` remembered
    (the oldest forgotten first), so the table itself cannot be flooded."""

    def __init__(self, what: str, rate: float, burst: float, sources: int = 65_536) -> None:
        self.what = what
        self.rate = rate
        self.burst = burst
        self.sources = sources
        self._tokens: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def empty(self, source: str, now: float | None = None) -> bool:
        """True if `source` has no token left now (nothing is used)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, since = self._tokens.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - since) * self.rate) < 1

    def take(self, source: str, now: float | None = None) -> None:
        """Use one token of `source`, or raise `Limited`."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, since = self._tokens.pop(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - since) * self.rate)
            if len(self._tokens) >= self.sources:
                self._tokens.pop(next(iter(self._tokens)))
            if tokens < 1:
                self._tokens[source] = (tokens, now)
                raise Limited(self.what, (1 - tokens) / self.rate)
            self._tokens[source] = (tokens - 1, now)


@dataclass
class _Pending:
    last: float
    repeated: int = 0


OTHERS = "other addresses"


class Aggregator:
    """Audit one refusal per (source, kind) per `window` seconds; count the rest. Once
    `max_entries` entries were made within a window, new sources are counted together under
    `OTHERS`."""

    def __init__(
        self, record: Callable[..., None], window: float = 10.0, max_entries: int = 100
    ) -> None:
        self._record = record
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[tuple[str, str], _Pending] = {}
        self._made: list[float] = []  # when the entries of the last window were made
        self._lock = threading.Lock()

    def note(self, source: str, kind: str, now: float | None = None, **fields: Any) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._made and now - self._made[0] >= self.window:
                self._made = [t for t in self._made if now - t < self.window]
            key = (source, kind)
            p = self._seen.get(key)
            if p is None and len(self._made) >= self.max_entries:
                source = OTHERS
                key = (source, kind)
                p = self._seen.get(key)
            if p is not None and now - p.last < self.window:
                p.repeated += 1
                return
            repeated = p.repeated if p is not None else 0
            if len(self._seen) > 65_536:
                self._seen.clear()
            self._seen[key] = _Pending(now)
            self._made.append(now)
        self._record(source=source, repeated=repeated, **fields)

    def flush(self) -> None:
        """Audit what is still counted (at shutdown)."""
        with self._lock:
            left = [(k, p.repeated) for k, p in self._seen.items() if p.repeated]
            self._seen.clear()
        for (source, kind), n in left:
            self._record(source=source, repeated=n, op=kind, reason="repeated refusals")


class Hold:
    """Holds a refusal back `seconds` before it is sent; at most `most` at a time (per
    worker), the others go at once."""

    def __init__(self, seconds: float = 1.0, most: int = 1024) -> None:
        self.seconds = seconds
        self.most = most
        self.held = 0

    async def __call__(self) -> None:
        if self.held >= self.most or self.seconds <= 0:
            return
        self.held += 1
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.held -= 1


_NONCE = "/v1/attestation/nonce"
_REGISTER = "/v1/clients"
_MAX_NONCE_BODY = 4096  # a nonce request is a config id of at most 600 characters


class Gate:
    """ASGI middleware: refuses anonymous writes of a source over its rate before anything
    else runs.

    - `POST /v1/clients` takes a token of `registrations` here (the endpoint does not).
    - `POST /v1/attestation/nonce`: while the source has no `unknown_ids` token left, a
      request whose config id `maybe_named` rules out from memory is refused here, unless
      the worker-wide `fresh_looks` budget lets it be looked up (a session created since the
      last snapshot this worker saw); otherwise the endpoint looks the id up and takes a
      token when it names nothing.
    Each refusal is counted by `denials` (one audit entry per source and window, written by
    `record_later` off the event loop)."""

    def __init__(
        self,
        app: ASGIApp,
        registrations: Bucket,
        unknown_ids: Bucket,
        denials: Aggregator,
        maybe_named: Callable[[str], bool],
        fresh_looks: Bucket | None = None,
        hold: Hold | None = None,
    ) -> None:
        self.app = app
        self.registrations = registrations
        self.unknown_ids = unknown_ids
        self.denials = denials
        self.maybe_named = maybe_named
        self.fresh_looks = fresh_looks or Bucket("lookups", rate=2, burst=4)
        self.hold = hold or Hold()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == _REGISTER:
            source = source_of(scope)
            try:
                self.registrations.take(source)
            except Limited as exc:
                self.denials.note(source, "register", op="register", reason="over the rate")
                await self._refuse(send, exc)
                return
        elif path == _NONCE:
            source = source_of(scope)
            if self.unknown_ids.empty(source):
                body, more = await _read_small(receive)
                config_id = _config_id(body) if not more else None
                if config_id is None or not (
                    self.maybe_named(config_id) or self._fresh_look()
                ):
                    self.denials.note(source, "nonce", op="nonce", reason="over the rate")
                    limited = Limited(self.unknown_ids.what, 1 / self.unknown_ids.rate)
                    await self._refuse(send, limited)
                    return
                receive = _replay(body, more, receive)
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, exc: Limited) -> None:
        await self.hold()
        await refuse(send, exc)

    def _fresh_look(self) -> bool:
        try:
            self.fresh_looks.take("")
        except Limited:
            return False
        return True


def source_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def refuse(send: Send, exc: Limited) -> None:
    body = json.dumps({"detail": {"reason": exc.reason}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(exc.retry_after).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_small(receive: Receive) -> tuple[bytes, bool]:
    """The request body up to `_MAX_NONCE_BODY` bytes, and whether more follows."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > _MAX_NONCE_BODY:
            return b"".join(chunks), True


def _config_id(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("config_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` that first hands over the `body` already read."""
    pending = [{"type": "http.request", "body": body, "more_body": more}]

    async def again() -> Message:
        return pending.pop() if pending else await receive()

    return again
