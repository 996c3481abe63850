"""The base image's Python interpreter: where it is, so requirements land where it looks.

The symlink chain from `/usr/bin/python3` names the version (`/usr/bin/python3.11`), which picks
the wheels and the site-packages folder. The base images `veil base create python` makes carry
it in the label `INTERPRETER_LABEL`; for any other base Veil mounts the image once and caches the
answer by image id. (The interpreter is measured like every other file of the image.)
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.image.measurement import mounted_image
from veil.paths import home_dir

__all__ = ["INTERPRETER_LABEL", "Interpreter", "interpreter_of_image", "interpreter_of_rootfs"]

INTERPRETER_LABEL = "dev.veil.interpreter"
ENTRY = "/usr/bin/python3"


@dataclass(frozen=True)
class Interpreter:
    paths: list[str]  # the symlink chain from /usr/bin/python3 to the binary

    @property
    def version(self) -> str:
        """`3.11` from `/usr/bin/python3.11`: where Debian's python looks for packages."""
        name = posixpath.basename(self.paths[-1])
        return name.removeprefix("python")

    @property
    def site_packages(self) -> str:
        return f"/usr/local/lib/python{self.version}/dist-packages"

    def to_json(self) -> str:
        return json.dumps({"paths": self.paths}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Interpreter:
        return cls(paths=list(json.loads(text)["paths"]))  # older labels also held "entries"


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
    return Interpreter(paths=chain)


def interpreter_of_image(image_id: str, labels: dict[str, str]) -> Interpreter:
    """The interpreter of a locally stored image (by id), from its label or by mounting it."""
    if labels.get(INTERPRETER_LABEL):
        return Interpreter.from_json(labels[INTERPRETER_LABEL])
    cache = home_dir() / "cache" / "interpreters" / f"{image_id}.json"
    if cache.exists():
        return Interpreter.from_json(cache.read_text())
    what = f"reading the Python interpreter of base image {image_id[:12]}"
    with mounted_image(image_id, what) as mnt:
        interp = interpreter_of_rootfs(mnt)
    atomic_write_text(cache, interp.to_json())
    return interp
