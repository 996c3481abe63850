"""The runtime base's content, computed from a dpkg database: a small root filesystem laid out
as debootstrap leaves it (merged /usr, generated files no package lists, bytecode)."""

from __future__ import annotations

import os
from pathlib import Path

from veil.image.runtime import keep_set, prune_to_runtime, runtime_ref

PACKAGES = {
    # name: (depends, files as dpkg lists them)
    "python3-minimal": ("dpkg, python3.11-minimal (>= 3.11.2)", ["/usr/bin/python3"]),
    "python3.11-minimal": ("libpython3.11-minimal, zlib1g | libz-dummy", [
        "/usr/bin/python3.11", "/etc/python3.11/sitecustomize.py",
        "/usr/share/doc/python3.11-minimal/changelog.gz"]),
    "libpython3.11-minimal": ("libc6", ["/usr/lib/python3.11/os.py"]),
    "libpython3.11-stdlib": ("libpython3.11-minimal, tzdata", [
        "/usr/lib/python3.11/json/__init__.py", "/usr/lib/python3.11/test/support.py",
        "/usr/lib/python3.11/lib2to3/main.py"]),
    "libc6": ("libgcc-s1", ["/lib/x86_64-linux-gnu/libc.so.6",
                            "/usr/lib/x86_64-linux-gnu/gconv/UTF-16.so"]),
    "libgcc-s1": ("libc6", ["/lib/x86_64-linux-gnu/libgcc_s.so.1"]),
    "zlib1g": ("libc6", ["/lib/x86_64-linux-gnu/libz.so.1"]),
    "dpkg": ("tar", ["/usr/bin/dpkg"]),
    "tar": ("libc6", ["/usr/bin/tar"]),
    "tzdata": ("debconf", ["/usr/share/zoneinfo/UTC"]),
    "dash": ("libc6", ["/usr/bin/dash", "/bin/sh"]),
    "python3-pip": ("python3", ["/usr/lib/python3/dist-packages/pip/__init__.py"]),
}


def _rootfs(root: Path) -> Path:
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (root / link).symlink_to(target)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    status = []
    for name, (deps, files) in PACKAGES.items():
        status.append(f"Package: {name}\nStatus: install ok installed\nDepends: {deps}\n"
                      "Description: x\n more text\n")
        suffix = ":amd64" if name.startswith("lib") else ""
        (info / f"{name}{suffix}.list").write_text("/.\n" + "\n".join(files) + "\n")
        for f in files:
            host = root / f.lstrip("/")
            host.parent.mkdir(parents=True, exist_ok=True)
            if f == "/bin/sh":
                host.symlink_to("dash")
            else:
                host.write_text(f)
    (root / "var/lib/dpkg/status").write_text("\n".join(status))
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/ld.so.cache").write_bytes(b"cache")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    for folder in ("usr/lib/python3.11/__pycache__", "usr/lib/python3.11/json/__pycache__"):
        (root / folder).mkdir(parents=True)
    (root / "usr/lib/python3.11/__pycache__/os.cpython-311.pyc").write_bytes(b"pyc")
    (root / "usr/lib/python3.11/__pycache__/gone.cpython-311.pyc").write_bytes(b"pyc")
    (root / "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc").write_bytes(b"pyc")
    return root


def test_the_runtime_set_is_the_closure_of_the_interpreter_without_tools(tmp_path: Path) -> None:
    root = _rootfs(tmp_path / "root")
    keep = keep_set(root, "3.11")
    # the interpreter, its libraries and stdlib with bytecode, resolved through merged /usr
    for path in ("/usr/bin/python3", "/usr/bin/python3.11", "/etc/python3.11/sitecustomize.py",
                 "/usr/lib/python3.11/os.py", "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
                 "/usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc",
                 "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                 "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1", "/etc/passwd", "/etc/ld.so.cache",
                 "/bin", "/lib", "/lib64", "/tmp", "/usr", "/usr/lib"):
        assert path in keep, path
    # stopped (dpkg → tar; tzdata), never reached (dash, pip), dropped parts, no source
    for path in ("/usr/bin/dpkg", "/usr/bin/tar", "/usr/share/zoneinfo/UTC", "/usr/bin/dash",
                 "/usr/bin/sh", "/bin/sh", "/usr/lib/python3/dist-packages/pip/__init__.py",
                 "/usr/lib/python3.11/test/support.py", "/usr/lib/python3.11/lib2to3/main.py",
                 "/usr/lib/x86_64-linux-gnu/gconv/UTF-16.so",
                 "/usr/share/doc/python3.11-minimal/changelog.gz",
                 "/usr/lib/python3.11/__pycache__/gone.cpython-311.pyc", "/var/lib/dpkg",
                 "/var/lib/dpkg/status", "/lib/x86_64-linux-gnu/libc.so.6"):
        assert path not in keep, path


def test_pruning_leaves_exactly_the_runtime_set(tmp_path: Path) -> None:
    root = _rootfs(tmp_path / "root")
    keep = keep_set(root, "3.11")
    prune_to_runtime(root, "3.11")
    left = {"/" + str(p.relative_to(root)) for p in root.rglob("*")}
    assert left == keep
    assert not (root / "var").exists() and not (root / "usr/bin/dash").exists()
    assert (root / "bin").is_symlink() and os.readlink(root / "bin") == "usr/bin"
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777"


def test_runtime_ref_is_the_tag_with_its_suffix() -> None:
    assert runtime_ref("127.0.0.1:5000/veil/python:bookworm") == \
        "127.0.0.1:5000/veil/python:bookworm-runtime"
    assert runtime_ref("127.0.0.1:5000/veil/python") == "127.0.0.1:5000/veil/python:latest-runtime"
    assert runtime_ref("127.0.0.1:5000/veil/python@sha256:" + "0" * 64) is None
