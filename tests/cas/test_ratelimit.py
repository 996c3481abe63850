"""Anonymous writes are limited per source and their refusals audited in aggregate."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cas.conftest import CasServer
from tests.cas.helpers import Launcher, session
from veil.cas import pki
from veil.cas.ratelimit import Aggregator, Bucket, Limited

pytestmark = pytest.mark.integration


def _audit(server: CasServer) -> list[dict[str, object]]:
    with sqlite3.connect(server.files.root / "cas.db") as conn:
        rows = conn.execute("SELECT entry FROM audit ORDER BY seq").fetchall()
    return [json.loads(text) for (text,) in rows]


def test_floods_of_anonymous_writes_are_limited_and_aggregated(
    cas_factory: Callable[..., CasServer], tmp_path: Path
) -> None:
    server = cas_factory(rate_scale=1)
    with server.client(tmp_path / "alice") as alice:
        alice.create_session("shop", session())
    before = len(_audit(server))
    with Launcher(server.addr, server.files.cert.read_bytes()) as lau:
        codes = [lau.nonce(f"shop/nosuch{i}/app").status_code for i in range(20)]
        assert codes == [404] * 20  # the burst: answered as unknown

        def timed(i: int) -> tuple[int, float]:
            t0 = time.monotonic()
            return lau.nonce(f"shop/nosuch{i}/app").status_code, time.monotonic() - t0

        # then limited: 5 a second more (per worker), the rest 429 without an audit entry,
        # held back a second each (a flooder waiting for its answers gets few)
        started = time.monotonic()
        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(timed, range(20, 140)))
        elapsed = time.monotonic() - started
        codes = [code for code, _ in answers]
        assert codes.count(404) <= 5 * elapsed + 1 and codes.count(429) >= 60
        assert set(codes) == {404, 429}
        assert min(t for code, t in answers if code == 429) >= 0.9
        denied = [e for e in _audit(server)[before:] if e.get("op") == "nonce"]
        assert len(denied) <= 2  # one entry per source per window, not one per request
        # a legitimate launcher from the same address is neither refused nor held up
        t0 = time.monotonic()
        assert lau.attest("shop/hello/app").status_code == 200
        assert lau.attest("shop/hello/app").status_code == 200
        assert time.monotonic() - t0 < 1.9  # a held answer alone would take 1 s each

        csr = {"csr": pki.make_csr(pki.new_ec_key()).decode()}
        started = time.monotonic()
        regs = [lau.http.post("/v1/clients", json=csr) for _ in range(45)]
        elapsed = time.monotonic() - started
        codes = [r.status_code for r in regs]
        # a burst of 30 per source, alice's registration above already took one; then one
        # every 2 s: a fast run gets exactly 29, a slow one a few refills more
        assert codes[:29] == [200] * 29
        assert codes.count(200) <= 29 + elapsed / 2 + 1 and set(codes) == {200, 429}
        limited = next(r for r in reversed(regs) if r.status_code == 429)
        assert limited.elapsed.total_seconds() >= 0.9  # held back
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "too many registrations" in limited.json()["detail"]["reason"]
    registered = [e for e in _audit(server)[before:] if e["event"] == "register"]
    assert len(registered) == codes.count(200)  # each accepted one audited once


def test_aggregated_entries_count_every_refusal() -> None:
    recorded: list[dict[str, object]] = []
    agg = Aggregator(lambda **f: recorded.append(f), window=10)
    for i in range(50):
        agg.note("10.0.0.1", "nonce", now=100 + i * 0.1, reason="unknown")
    agg.note("10.0.0.1", "nonce", now=111, reason="unknown")
    agg.note("10.0.0.2", "nonce", now=111, reason="unknown")
    assert [r["repeated"] for r in recorded] == [0, 49, 0]  # 51 + 1 refusals, 3 entries
    agg.note("10.0.0.2", "nonce", now=112, reason="unknown")
    agg.flush()  # the one still counted gets an entry of its own
    assert recorded[-1]["repeated"] == 1
    refusals = 3 + sum(int(str(r["repeated"])) for r in recorded)
    assert refusals == 53


def test_the_bucket_refills() -> None:
    b = Bucket("things", rate=1, burst=2)
    b.take("a", now=0)
    b.take("a", now=0)
    with pytest.raises(Limited) as err:
        b.take("a", now=0.5)
    assert err.value.retry_after == 1
    b.take("b", now=0.5)  # another source has its own tokens
    b.take("a", now=2)
