"""Bounds: what one session may make CAS generate, store and answer; one name limit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.cas.conftest import CasServer
from tests.cas.helpers import Launcher, session
from veil.cas.client import CasClient
from veil.cas.core import ByteCache
from veil.cas.limits import ANSWER_MAX, NAME_MAX
from veil.errors import UserError

pytestmark = pytest.mark.integration


@pytest.fixture
def ns() -> str:
    return "ns-" + uuid.uuid4().hex[:10]


@pytest.fixture
def launcher(cas: CasServer) -> Iterator[Launcher]:
    with Launcher(cas.addr, cas.files.cert.read_bytes()) as lau:
        yield lau


def test_an_amplifying_session_is_refused_naming_the_limit(alice: CasClient, ns: str) -> None:
    """28 KB of session: one 64 KiB secret referenced 2,000 times in an injection file."""
    doc = session(secrets=[{"name": "password", "kind": "binary", "size": 1 << 16}])
    doc["images"][0]["injection_files"][0]["content"] = "$$SCONE::password$$" * 2000
    started = time.monotonic()
    with pytest.raises(UserError, match=r"422.*injection|422.*over the limit of 1 MiB"):
        alice.create_session(ns, doc)
    assert time.monotonic() - started < 10


def test_secret_values_are_bounded_per_session(alice: CasClient, ns: str) -> None:
    secrets = [{"name": f"s{i}", "kind": "ascii", "size": 1 << 16} for i in range(150)]
    started = time.monotonic()
    with pytest.raises(UserError, match=r"422.*secrets: .*over the limit of 1 MiB per session"):
        alice.create_session(ns, session(secrets=[*secrets, {"name": "password", "kind": "ascii"}]))
    assert time.monotonic() - started < 5  # refused before anything is generated
    # control: a large secret within the limit is made, and provisioned whole
    ok = session(secrets=[{"name": "password", "kind": "ascii", "size": 1 << 16}])
    alice.create_session(ns, ok)


def test_one_name_limit_everywhere(alice: CasClient, ns: str) -> None:
    longest = "s" * NAME_MAX
    alice.create_session(ns, session(name=longest))
    assert alice.read_session(ns, longest)["name"] == longest  # what can be made can be read
    with pytest.raises(UserError, match=f"422.*name: {NAME_MAX + 1} characters.*{NAME_MAX}"):
        alice.create_session(ns, session(name="s" * (NAME_MAX + 1)))


def test_the_answer_under_the_limit_is_served(
    alice: CasClient, launcher: Launcher, ns: str
) -> None:
    doc = session(secrets=[{"name": "password", "kind": "ascii", "size": 1 << 15}])
    doc["images"][0]["injection_files"][0]["content"] = "$$SCONE::password$$" * 8
    alice.create_session(ns, doc)
    r = launcher.attest(f"{ns}/hello/app")
    assert r.status_code == 200 and len(r.content) < ANSWER_MAX


def test_the_configuration_cache_is_bounded_in_bytes() -> None:
    cache = ByteCache(1000)
    for i in range(50):
        cache.put(i, f"v{i}", 100)
    assert cache.size <= 1000 and len(cache) == 10
    assert cache.get(49) == "v49" and cache.get(0) is None
    cache.put("huge", "x", 600)  # more than a quarter of the cache: not kept
    assert cache.get("huge") is None and cache.size <= 1000
