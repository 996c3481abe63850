"""Writing a command's output file (`--file`, `-o`): complete or not at all, errors in words."""

from __future__ import annotations

from pathlib import Path

from veil.errors import OperationalError, UserError
from veil.fsutil import atomic_write_text

__all__ = ["write_output"]


def write_output(path: Path, text: str, *, option: str) -> None:
    """Write `text` to `path` atomically; a folder, or a file where a folder should be, is a
    user error naming the option; a refusal of the file system says which file and why."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; name the file to write",
                        hint=f"e.g. {option} {path / 'out.yaml'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is a file, not a folder")
            break
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise OperationalError(f"cannot write {path}: {err.strerror or err}",
                               hint="check that its folder exists and is writable") from None
