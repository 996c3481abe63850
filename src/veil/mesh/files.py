"""Writing a generated tree of files (a chart, the policies) into a fresh folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["write_tree"]


def _write(items: list[tuple[str, str]]) -> None:
    for path, text in items:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def write_tree(root: Path, files: Mapping[str, str]) -> None:
    """Write `files` (relative path → text) below `root`, which the caller made fresh (see
    `veil.fsutil.replace_dir`, which swaps it in whole). Thousands of small files: creating
    them is system-call bound, so a few threads write them at once."""
    for d in sorted({os.path.dirname(rel) for rel in files} - {""}):
        (root / d).mkdir(parents=True, exist_ok=True)
    items = [(str(root / rel), text) for rel, text in files.items()]
    if len(items) < 64:
        _write(items)
        return
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(_write, [items[i::4] for i in range(4)]))
