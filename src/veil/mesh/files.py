"""Writing a generated tree of files (a chart, the policies) into a fresh folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["write_tree"]

_THREADS = 8


def _write(root: Path, dirs: list[str], items: list[tuple[str, str]]) -> None:
    for d in dirs:
        os.makedirs(root / d, exist_ok=True)
    for rel, text in items:
        with open(root / rel, "w", encoding="utf-8") as f:
            f.write(text)


def _group(rel: str) -> str:
    """Files that share a group are written by one thread, their folders made first: the
    folder of a subchart (`charts/<service>/...`), else the file's own folder."""
    parts = rel.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else os.path.dirname(rel)


def write_tree(root: Path, files: Mapping[str, str]) -> None:
    """Write `files` (relative path → text) below `root`, which the caller made fresh (see
    `veil.fsutil.replace_dir`, which swaps it in whole). Thousands of small files: creating
    them is system-call bound and, on a busy disk, waits for the journal, so several threads
    write them at once, each its own folders."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for rel, text in files.items():
        groups.setdefault(_group(rel), []).append((rel, text))
    work = [(sorted({os.path.dirname(rel) for rel, _ in items} - {""}), items)
            for items in groups.values()]
    if len(files) < 64:
        for dirs, items in work:
            _write(root, dirs, items)
        return
    # the groups' common parents first (charts/), so threads never race to make them
    for parent in sorted({os.path.dirname(g) for g in groups} - {""}):
        os.makedirs(root / parent, exist_ok=True)
    buckets: list[tuple[list[str], list[tuple[str, str]]]] = [([], []) for _ in range(_THREADS)]
    for i, (dirs, items) in enumerate(work):
        buckets[i % _THREADS][0].extend(dirs)
        buckets[i % _THREADS][1].extend(items)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        list(pool.map(lambda b: _write(root, b[0], b[1]), buckets))
