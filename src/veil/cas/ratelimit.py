"""Limits on what anonymous callers can make CAS write, per source address.

Two requests need no identity and still wrote: a nonce request for a config id that names no
service (one audit entry each) and client registration (a client row and an audit entry each).
A flood of them grew the database by hundreds of rows a second. So, per source address and
per worker process:
- `Bucket`: a token bucket; a source over its rate gets 429 before anything is read or written;
- `Aggregator`: refusals of one kind from one source are audited once per `window` seconds;
  the entry that follows says how many were answered without an entry of their own
  (`repeated`), so the log still counts every one.

The source is the TCP peer: behind a proxy that is the proxy, and the limits apply to all its
clients together (put the limits there instead). Each worker process keeps its own counts, so
a CAS with W workers allows W times the rates below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Aggregator", "Bucket", "Limited"]


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


class Aggregator:
    """Audit one refusal per (source, kind) per `window` seconds; count the rest."""

    def __init__(self, record: Callable[..., None], window: float = 10.0) -> None:
        self._record = record
        self.window = window
        self._seen: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()

    def note(self, source: str, kind: str, now: float | None = None, **fields: Any) -> None:
        now = time.monotonic() if now is None else now
        key = (source, kind)
        with self._lock:
            p = self._seen.get(key)
            if p is not None and now - p.last < self.window:
                p.repeated += 1
                return
            repeated = p.repeated if p is not None else 0
            if len(self._seen) > 65_536:
                self._seen.clear()
            self._seen[key] = _Pending(now)
        self._record(source=source, repeated=repeated, **fields)

    def flush(self) -> None:
        """Audit what is still counted (at shutdown)."""
        with self._lock:
            left = [(k, p.repeated) for k, p in self._seen.items() if p.repeated]
            self._seen.clear()
        for (source, kind), n in left:
            self._record(source=source, repeated=n, op=kind, reason="repeated refusals")
