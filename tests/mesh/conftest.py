"""A real CAS (`veil cas serve` on a free loopback port) for the mesh apply tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cas.conftest import CasServer, start_cas
from veil.cas.state import init_state


@pytest.fixture(scope="session")
def mesh_cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasServer]:
    root = tmp_path_factory.mktemp("mesh-cas")
    files = init_state(root / "state", ["127.0.0.1", "localhost"])
    server = start_cas(files, None, root / "cas.log")
    try:
        yield server
    finally:
        server.stop()
