"""A minimal image filesystem for launcher tests: a program, its plan, and a clean /proc/self.

The launcher reads `/proc/self/{environ,maps,mountinfo}` under the root it is given, so a test
root carries what a clean container shows: no injected variables, only measured libraries mapped,
no mount besides the root filesystem and the runtime ones.
"""

from __future__ import annotations

from pathlib import Path

from veil.runtime.measure import PLAN_PATH, RUNTIME_PATHS, MeasurementPlan, measure

CLEAN_MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 00:28 123 /usr/bin/python3.11
7f0000000000-7f0000001000 r-xp 00000000 00:28 124 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n\
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0                          [stack]
"""
CLEAN_MOUNTINFO = """\
73 48 0:40 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
74 73 0:43 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
76 73 0:44 / /dev rw,nosuid,noexec - tmpfs tmpfs rw,size=65536k,mode=755
78 73 254:0 /usr/bin/catatonit /run/podman-init ro,relatime - ext4 /dev/vda rw
85 73 254:0 /run/x/userdata/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw
"""


def write_proc(root: Path, *, environ: dict[str, str] | None = None, maps: str = CLEAN_MAPS,
               mountinfo: str = CLEAN_MOUNTINFO) -> None:
    proc = root / "proc/self"
    proc.mkdir(parents=True, exist_ok=True)
    env = environ if environ is not None else {"PATH": "/usr/bin", "HOSTNAME": "c1"}
    (proc / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    (proc / "maps").write_text(maps)
    (proc / "mountinfo").write_text(mountinfo)


def make_image_root(tmp_path: Path, exclude: tuple[str, ...] = (),
                    host_paths: tuple[str, ...] = ()) -> tuple[Path, str]:
    """`tmp_path/root` with /app/main.py, an interpreter and the measurement plan of the whole
    tree; returns (root, measurement)."""
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "app/main.py").write_text("print('hi')\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_bytes(b"\x7fELF interpreter")
    (root / "usr/bin/python3.11").chmod(0o755)
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "tmp").mkdir()
    write_proc(root)
    plan = MeasurementPlan(roots=["/"], command="python3 main.py", pwd="/app", local_env={},
                           exclude=sorted({*RUNTIME_PATHS, *exclude, *host_paths}),
                           host_paths=list(host_paths))
    (root / PLAN_PATH.lstrip("/")).parent.mkdir(parents=True)
    (root / PLAN_PATH.lstrip("/")).write_text(plan.to_json())
    return root, measure(str(root), plan)
