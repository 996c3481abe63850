"""Where Veil keeps its state on this machine.

`VEIL_HOME` (default `~/.local/share/veil`) holds the local index of service descriptions and
other caches; `VEIL_CONFIG_DIR` (default `~/.config/veil`) holds the client identity and config.
Tests point both at temporary directories.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_dir", "home_dir"]


def home_dir() -> Path:
    env = os.environ.get("VEIL_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "veil"


def config_dir() -> Path:
    env = os.environ.get("VEIL_CONFIG_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "veil"
