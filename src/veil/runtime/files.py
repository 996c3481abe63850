"""Injection files: written so that only a file the launcher itself creates receives a secret.

The target's folder is reached from `root` one component at a time without following links;
a missing folder is created by the launcher (0755). Every folder on the way must lie on the
image's root filesystem. The content goes into a new file under a random name in that folder,
opened with O_CREAT|O_EXCL|O_NOFOLLOW (so nothing that already exists — a planted link, a host
file — is ever opened for writing), gets its mode, and is renamed over the target. A link at
the target is replaced, not followed; a file or folder mounted at the target cannot be renamed
over, so the start is refused and the mounted file never sees the content.
"""

from __future__ import annotations

import os
import posixpath

__all__ = ["FileRefusal", "write_file"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class FileRefusal(Exception):
    """An injection file cannot be written safely (the message names the path)."""


def _enter(fd: int, name: str, shown: str) -> int:
    try:
        return os.open(name, _DIR, dir_fd=fd)
    except FileNotFoundError:
        pass
    except OSError as err:  # ELOOP: a link; ENOTDIR: a file
        raise FileRefusal(f"{shown} is not a folder of the image ({err.strerror})") from None
    try:
        os.mkdir(name, 0o755, dir_fd=fd)
        return os.open(name, _DIR, dir_fd=fd)
    except OSError as err:
        raise FileRefusal(f"cannot create the folder {shown}: {err.strerror}") from None


def write_file(root: str, path: str, data: bytes, mode: int) -> None:
    """Write `data` to the image path `path` (absolute) under `root` with permission `mode`."""
    norm = posixpath.normpath(path)
    if not norm.startswith("/") or norm == "/":
        raise FileRefusal(f"injection file path {path!r} is not an absolute file path")
    parts = norm.strip("/").split("/")
    fd = os.open(root, _DIR)
    try:
        root_dev = os.fstat(fd).st_dev
        shown = ""
        for name in parts[:-1]:
            shown += "/" + name
            inner = _enter(fd, name, shown)
            os.close(fd)
            fd = inner
            if os.fstat(fd).st_dev != root_dev:
                raise FileRefusal(
                    f"{shown} is on another filesystem than the image's root (a mount); "
                    f"refusing to write {norm} there"
                )
        tmp = f".{parts[-1]}.veil-{os.urandom(8).hex()}"
        try:
            out = os.open(tmp, _NEW, 0o600, dir_fd=fd)
        except OSError as err:
            raise FileRefusal(f"cannot create {norm}: {err.strerror}") from None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            os.fchmod(out, mode)
        finally:
            os.close(out)
        try:
            os.rename(tmp, parts[-1], src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as err:
            os.unlink(tmp, dir_fd=fd)
            raise FileRefusal(
                f"cannot write {norm}: {err.strerror} (something is mounted or a folder sits "
                "there; it never receives the content)"
            ) from None
    finally:
        os.close(fd)
