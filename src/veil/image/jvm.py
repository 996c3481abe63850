"""The Java runtime of a base image, for a `build.kind: java*` service.

The base must hold `java` (the symlink chain from `/usr/bin/java`, through Debian's alternatives
or straight, to the binary), the JVM (`/usr/lib/jvm`) and its configuration (`/etc/java-*`,
Debian's). All of them are measured like every file of the image; this only checks that they are
there, names them, and reads the runtime's Java version from its `release` file (so a `java21`
service is not built on a Java 17 base). Read once per base image (mounted) and cached by image
id, like the Python interpreter.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import dataclass

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.image.measurement import mounted_image
from veil.paths import home_dir

__all__ = ["JAVA", "Jvm", "java_major", "jvm_of_image", "jvm_of_rootfs"]

JAVA = "/usr/bin/java"
_RELEASE = re.compile(r'^JAVA_VERSION="([^"]+)"', re.M)


@dataclass(frozen=True)
class Jvm:
    paths: list[str]  # what holds the runtime: the chain to `java`, /usr/lib/jvm, /etc/java-*
    version: str | None = None  # JAVA_VERSION of the runtime's `release` file (`21.0.8`)
    home: str | None = None  # the runtime's folder (the parent of bin/java)

    @property
    def major(self) -> str | None:
        return java_major(self.version) if self.version else None

    def to_json(self) -> str:
        return json.dumps({"paths": self.paths, "version": self.version, "home": self.home},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Jvm:
        data = json.loads(text)
        return cls(paths=list(data["paths"]), version=data.get("version"),
                   home=data.get("home"))


def java_major(version: str) -> str:
    """`21.0.8` → 21; Java 8's `1.8.0_392` → 8."""
    parts = version.split(".")
    return parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0]


def jvm_of_rootfs(root: str) -> Jvm:
    chain = [JAVA]
    cur = JAVA
    for _ in range(16):
        host = os.path.join(root, cur.lstrip("/"))
        if not os.path.islink(host):
            break
        cur = posixpath.normpath(posixpath.join(posixpath.dirname(cur), os.readlink(host)))
        chain.append(cur)
    if not os.path.isfile(os.path.join(root, cur.lstrip("/"))):
        raise OperationalError(
            f"the base image has no Java runtime at {JAVA}",
            hint="use a Java base image (`veil base create java` makes one)")
    etc = os.path.join(root, "etc")
    configs = sorted(f"/etc/{d}" for d in os.listdir(etc) if d.startswith("java-"))
    roots = [p for p in chain if not p.startswith("/usr/lib/jvm/")] + ["/usr/lib/jvm", *configs]
    home = posixpath.dirname(posixpath.dirname(cur))
    version = None
    try:
        with open(os.path.join(root, home.lstrip("/"), "release"), encoding="utf-8") as f:
            m = _RELEASE.search(f.read())
            version = m.group(1) if m else None
    except OSError:
        pass  # no release file: the version cannot be checked
    return Jvm(paths=roots, version=version, home=home)


def jvm_of_image(image_id: str) -> Jvm:
    cache = home_dir() / "cache" / "jvms" / f"{image_id}.v2.json"
    if cache.exists():
        return Jvm.from_json(cache.read_text())
    what = f"reading the Java runtime of base image {image_id[:12]}"
    with mounted_image(image_id, what) as mnt:
        jvm = jvm_of_rootfs(mnt)
    atomic_write_text(cache, jvm.to_json())
    return jvm
