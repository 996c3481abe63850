"""sconectl's `apply -f service.yaml --helm-template DIR`: the chart templates a service carries.

The folder (sconectl's `templates-genservice` layout: `charts/Chart.yaml`, `charts/templates/`,
values templates) is read as text into the service description, so the mesh that deploys the
service renders that service's subchart from it, wherever the mesh is applied. Only text files;
a folder of a few kB, not a whole chart repository.
"""

from __future__ import annotations

from pathlib import Path

from veil.errors import UserError

__all__ = ["MAX_TEMPLATE_BYTES", "read_helm_template"]

MAX_TEMPLATE_BYTES = 256 * 1024


def read_helm_template(folder: Path, manifest_dir: Path) -> dict[str, str]:
    """Every file under `folder` (relative to the current directory, as sconectl reads it)."""
    if not folder.is_dir():
        there = manifest_dir / folder
        also = (f"; {there} exists: sconectl resolves paths against the current directory, "
                f"so run from {manifest_dir} or name it {there}"
                if not folder.is_absolute() and there.is_dir() else "")
        raise UserError(f"--helm-template {folder}: no such folder in the current directory "
                        f"({Path.cwd()}){also}")
    out: dict[str, str] = {}
    total = 0
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            raise UserError(f"--helm-template {folder}: {p} is a symbolic link; the templates "
                            "travel in the image label, copy the file in instead")
        if not p.is_file():
            continue
        data = p.read_bytes()
        total += len(data)
        if total > MAX_TEMPLATE_BYTES:
            raise UserError(f"--helm-template {folder}: more than {MAX_TEMPLATE_BYTES:,} bytes; "
                            "chart templates are a few files of text")
        try:
            out[p.relative_to(folder).as_posix()] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"--helm-template {folder}: {p} is not UTF-8 text") from None
    if not out:
        raise UserError(f"--helm-template {folder}: the folder is empty")
    return out
