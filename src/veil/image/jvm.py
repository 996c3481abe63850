"""The Java runtime of a base image, for a `build.kind: java*` service.

The base must hold `java` (the symlink chain from `/usr/bin/java` through Debian's alternatives
to the binary), the JVM (`/usr/lib/jvm`) and its configuration (`/etc/java-*`). All of them are
measured like every file of the image; this only checks that they are there and names them.
Read once per base image (mounted) and cached by image id, like the Python interpreter.
"""

from __future__ import annotations

import os
import posixpath

from veil.errors import OperationalError
from veil.fsutil import atomic_write_text
from veil.image.interpreter import Interpreter
from veil.image.measurement import mounted_image
from veil.paths import home_dir

__all__ = ["JAVA", "jvm_of_image", "jvm_of_rootfs"]

JAVA = "/usr/bin/java"


def jvm_of_rootfs(root: str) -> Interpreter:
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
    return Interpreter(paths=roots)


def jvm_of_image(image_id: str) -> Interpreter:
    cache = home_dir() / "cache" / "jvms" / f"{image_id}.json"
    if cache.exists():
        return Interpreter.from_json(cache.read_text())
    what = f"reading the Java runtime of base image {image_id[:12]}"
    with mounted_image(image_id, what) as mnt:
        jvm = jvm_of_rootfs(mnt)
    atomic_write_text(cache, jvm.to_json())
    return jvm
