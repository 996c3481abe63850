"""Writing a generated tree of files (a chart, the policies): swapped in whole, or left alone
when the folder already holds exactly those files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from veil.fsutil import replace_dir

__all__ = ["put_tree", "write_tree"]

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
    # a large group (a flat folder: the policies) is shared out in pieces, its folders first
    split: list[tuple[list[str], list[tuple[str, str]]]] = []
    for dirs, items in work:
        if len(items) <= 64:
            split.append((dirs, items))
            continue
        for d in dirs:
            os.makedirs(root / d, exist_ok=True)
        split += [([], items[i:i + 64]) for i in range(0, len(items), 64)]
    work = split
    buckets: list[tuple[list[str], list[tuple[str, str]]]] = [([], []) for _ in range(_THREADS)]
    for i, (dirs, items) in enumerate(work):
        buckets[i % _THREADS][0].extend(dirs)
        buckets[i % _THREADS][1].extend(items)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        list(pool.map(lambda b: _write(root, b[0], b[1]), buckets))


def _holds(target: Path, files: Mapping[str, str]) -> bool:
    """Whether `target` is a folder holding exactly `files`: no other file, folder or link,
    every text the same."""
    if target.is_symlink() or not target.is_dir():
        return False
    wanted_dirs = {os.path.dirname(rel) for rel in files} - {""}
    wanted_dirs |= {p for d in wanted_dirs for p in _parents(d)}
    seen = 0
    for dirpath, dirs, names in os.walk(target):
        rel_dir = os.path.relpath(dirpath, target)
        rel_dir = "" if rel_dir == "." else rel_dir
        for d in dirs:
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if rel not in wanted_dirs or os.path.islink(os.path.join(dirpath, d)):
                return False
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            text = files.get(rel)
            path = os.path.join(dirpath, name)
            if text is None or os.path.islink(path):
                return False
            try:
                with open(path, "rb") as f:
                    if f.read(len(text) * 4 + 1) != text.encode("utf-8"):
                        return False
            except OSError:
                return False
            seen += 1
    return seen == len(files)


def _parents(d: str) -> list[str]:
    parts = d.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def put_tree(target: Path, files: Mapping[str, str]) -> bool:
    """Make `target` hold exactly `files` (relative path → text). When it already does,
    nothing is written (a dry run repeated on an unchanged mesh rewrote thousands of files);
    otherwise a new folder replaces it whole (`veil.fsutil.replace_dir`). Returns whether
    anything was written."""
    if _holds(target, files):
        return False
    with replace_dir(target) as tmp:
        write_tree(tmp, files)
    return True
