"""Shared test fixtures. Server fixtures of one area live in that area's conftest.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _isolated_veil_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the user's real ~/.local/share/veil or ~/.config/veil."""
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "veil-home"))
    monkeypatch.setenv("VEIL_CONFIG_DIR", str(tmp_path / "veil-config"))
    yield
