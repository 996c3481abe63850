"""The base image's Python interpreter: which files it is, for the measurement.

`/usr/bin/python3` and everything its symlink chain leads to are measured, so swapping the
interpreter changes the measurement. The base images `veil base create python` makes carry this
in the label `INTERPRETER_LABEL`; for any other base Veil mounts the image once and caches the
answer by image id.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.image.tools import run_tool
from veil.paths import home_dir
from veil.runtime.measure import FileEntry, MeasurementPlan, scan

__all__ = ["INTERPRETER_LABEL", "Interpreter", "interpreter_of_image", "interpreter_of_rootfs"]

INTERPRETER_LABEL = "dev.veil.interpreter"
ENTRY = "/usr/bin/python3"


@dataclass(frozen=True)
class Interpreter:
    paths: list[str]  # the symlink chain from /usr/bin/python3 to the binary
    entries: list[FileEntry]

    @property
    def version(self) -> str:
        """`3.11` from `/usr/bin/python3.11`: where Debian's python looks for packages."""
        name = posixpath.basename(self.paths[-1])
        return name.removeprefix("python")

    @property
    def site_packages(self) -> str:
        return f"/usr/local/lib/python{self.version}/dist-packages"

    def to_json(self) -> str:
        return json.dumps(
            {"paths": self.paths, "entries": [[e.path, e.mode, e.sha256] for e in self.entries]},
            sort_keys=True, separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Interpreter:
        doc = json.loads(text)
        return cls(paths=list(doc["paths"]), entries=[FileEntry(*e) for e in doc["entries"]])


def interpreter_of_rootfs(root: str) -> Interpreter:
    chain = [ENTRY]
    cur = ENTRY
    for _ in range(16):
        host = os.path.join(root, cur.lstrip("/"))
        if not os.path.islink(host):
            break
        target = os.readlink(host)
        cur = posixpath.normpath(posixpath.join(posixpath.dirname(cur), target))
        chain.append(cur)
    if not os.path.isfile(os.path.join(root, cur.lstrip("/"))):
        raise OperationalError(
            f"the base image has no Python interpreter at {ENTRY}",
            hint="use a Python base image (`veil base create python` makes one)",
        )
    plan = MeasurementPlan(roots=chain, command="", pwd="/", local_env={})
    return Interpreter(paths=chain, entries=scan(root, plan))


def interpreter_of_image(image_id: str, labels: dict[str, str]) -> Interpreter:
    """The interpreter of a locally stored image (by id), from its label or by mounting it."""
    if labels.get(INTERPRETER_LABEL):
        return Interpreter.from_json(labels[INTERPRETER_LABEL])
    cache = home_dir() / "cache" / "interpreters" / f"{image_id}.json"
    if cache.exists():
        return Interpreter.from_json(cache.read_text())
    what = f"reading the Python interpreter of base image {image_id[:12]}"
    cid = run_tool(["buildah", "from", "--pull-never", image_id], what=what).stdout.decode().strip()
    try:
        mnt = run_tool(["buildah", "mount", cid], what=what).stdout.decode().strip()
        interp = interpreter_of_rootfs(mnt)
    finally:
        run_tool(["buildah", "rm", cid], what=what)
    atomic_write_text(cache, interp.to_json())
    return interp
