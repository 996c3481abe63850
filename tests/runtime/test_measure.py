"""The measurement of a whole root filesystem, as the builder and the launcher compute it."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.runtime import measure as m
from veil.runtime.measure import (
    PLAN_PATH,
    RUNTIME_PATHS,
    Entry,
    MeasurementError,
    MeasurementPlan,
    MissingFileError,
    digest_of,
    measure,
    scan,
)

SITE = "usr/lib/python3/dist-packages"
STDLIB = "usr/lib/python3.11"


def tree(root: Path, *, exclude: tuple[str, ...] = ("/app/injected.conf",)) -> MeasurementPlan:
    """A small image: program, stdlib, site-packages, interpreter link, /etc, runtime dirs."""
    for d in ("app/pkg", SITE, f"{STDLIB}/encodings", "usr/bin", "etc/veil", "tmp", "run",
              "var/tmp", "proc", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "app/main.py").write_text("print(1)\n")
    (root / "app/pkg/mod.py").write_text("X = 1\n")
    (root / f"{STDLIB}/hashlib.py").write_text("# hashlib\n")
    (root / f"{STDLIB}/sitecustomize.py").write_text("")
    (root / f"{STDLIB}/encodings/__init__.py").write_text("")
    (root / "usr/bin/python3.11").write_bytes(b"interp" * 1000)
    (root / "usr/bin/python3.11").chmod(0o755)
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    plan = MeasurementPlan(roots=["/"], command="python3 main.py", pwd="/app",
                           local_env={"A": "1"}, exclude=[*RUNTIME_PATHS, *exclude])
    (root / PLAN_PATH.lstrip("/")).write_text(plan.to_json())
    return plan


def test_plan_round_trips(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    again = MeasurementPlan.from_json((tmp_path / PLAN_PATH.lstrip("/")).read_text())
    assert again.canonical() == plan.canonical()
    with pytest.raises(ValueError, match="version 1"):
        MeasurementPlan.from_json('{"version": 1}')


def test_the_caller_and_not_a_worker_returns_the_measurement(tmp_path: Path) -> None:
    """A forked worker never returns into the caller's code: only the process that asked for
    the measurement answers (in a fresh interpreter, where no thread stops the workers). First
    in the file: a caller that ran a worker's life would end this test process with status 0
    at the first measurement that forks, before any later test could fail."""
    plan = tree(tmp_path)
    _many(tmp_path)
    script = (
        "import os, sys\n"
        "from veil.runtime.measure import MeasurementPlan, Measuring\n"
        "plan = MeasurementPlan.from_json(open(sys.argv[2]).read())\n"
        "measuring = Measuring(sys.argv[1], plan, workers=2)\n"
        "kids = len(measuring._kids)\n"
        "print(os.getpid(), kids, measuring.digest(), flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(tmp_path / PLAN_PATH.lstrip("/"))],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.split() == [str(proc.pid), "2", measure(str(tmp_path), plan, workers=0)]


def test_every_entry_is_listed_with_type_mode_owner_and_value(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    entries = {e.path: e for e in scan(str(tmp_path), plan)}
    st_root = os.lstat(tmp_path)
    assert entries["/"] == Entry("/", "d", stat.S_IMODE(st_root.st_mode), st_root.st_uid,
                                 st_root.st_gid, "")
    assert entries["/usr/bin/python3"].kind == "l"
    assert entries["/usr/bin/python3"].value == "python3.11"
    py = entries["/usr/bin/python3.11"]
    assert py.kind == "f" and py.mode == 0o755
    assert py.value == hashlib.sha256(b"interp" * 1000).hexdigest()
    assert entries["/app/pkg"].kind == "d"
    # the plan's own file is measured like any other
    assert PLAN_PATH in entries and f"/{STDLIB}/sitecustomize.py" in entries
    # runtime paths are left out, with everything under them
    assert not any(m.is_excluded(p, RUNTIME_PATHS) for p in entries)
    assert list(entries) == sorted(entries, key=os.fsencode)


def _append(p: Path, text: str) -> None:
    with p.open("a") as f:
        f.write(text)


def _relink(p: Path, target: str) -> None:
    p.unlink()
    p.symlink_to(target)


def _rewrite_plan(root: Path) -> None:
    """The attacker's edit of the plan: one more path excluded, the program otherwise intact."""
    plan = MeasurementPlan.from_json((root / PLAN_PATH.lstrip("/")).read_text())
    plan.exclude.append("/app/evil.py")
    (root / PLAN_PATH.lstrip("/")).write_text(plan.to_json())


ATTACKS: dict[str, Callable[[Path], object]] = {
    "sitecustomize line": lambda r: _append(r / STDLIB / "sitecustomize.py", "import evil\n"),
    ".pth in site-packages": lambda r: (r / SITE / "evil.pth").write_text("import evil\n"),
    "appended stdlib module": lambda r: _append(r / STDLIB / "hashlib.py", "import evil\n"),
    "ld.so.preload": lambda r: (r / "etc/ld.so.preload").write_text("/usr/lib/evil.so\n"),
    "changed program": lambda r: (r / "app/main.py").write_text("print(2)\n"),
    "extra module": lambda r: (r / "app/pkg/extra.py").write_text(""),
    "extra folder": lambda r: (r / "app/extra").mkdir(),
    "chmod": lambda r: os.chmod(r / "app/main.py", 0o755),
    "chmod folder": lambda r: os.chmod(r / "app/pkg", 0o777),
    "chown": lambda r: os.chown(r / "app/main.py", 1000, 1000),
    "relinked interpreter": lambda r: _relink(r / "usr/bin/python3", "/tmp/python3"),
    "link for file": lambda r: _relink(r / "app/pkg/mod.py", "/app/main.py"),
    "removed file": lambda r: (r / f"{STDLIB}/encodings/__init__.py").unlink(),
    "cas key added": lambda r: (r / "etc/veil/cas-key").write_text("AAAA\n"),
    "fifo": lambda r: os.mkfifo(r / "app/pipe"),
    "bytecode": lambda r: ((r / "app/pkg/__pycache__").mkdir(),
                           (r / "app/pkg/__pycache__/mod.cpython-311.pyc").write_bytes(b"")),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_any_change_anywhere_changes_the_measurement(tmp_path: Path, attack: str) -> None:
    plan = tree(tmp_path)
    before = measure(str(tmp_path), plan)
    ATTACKS[attack](tmp_path)
    assert measure(str(tmp_path), plan) != before


def test_an_edited_plan_changes_the_measurement(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    before = measure(str(tmp_path), plan)
    (tmp_path / "app/evil.py").write_text("")
    _rewrite_plan(tmp_path)
    edited = MeasurementPlan.from_json((tmp_path / PLAN_PATH.lstrip("/")).read_text())
    assert measure(str(tmp_path), edited) != before
    # even with the plan file itself unchanged, its exclusions are part of the digest
    entries = scan(str(tmp_path), plan)
    assert digest_of(entries, edited) != digest_of(entries, plan)


def test_runtime_paths_and_injection_targets_do_not_count(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    before = measure(str(tmp_path), plan)
    (tmp_path / "app/injected.conf").write_text("written by the launcher")
    for d in ("tmp", "run", "var/tmp", "proc", "dev"):
        (tmp_path / d / "x").write_text("runtime")
    (tmp_path / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "etc/mtab").symlink_to("/proc/mounts")
    assert measure(str(tmp_path), plan) == before
    # but a file next to an injection target does count
    (tmp_path / "app/injected.conf.bak").write_text("")
    assert measure(str(tmp_path), plan) != before


def test_hard_links_are_measured_under_every_name(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    os.link(tmp_path / "usr/bin/python3.11", tmp_path / "usr/bin/python3.11-copy")
    entries = {e.path: e for e in scan(str(tmp_path), plan)}
    assert entries["/usr/bin/python3.11-copy"] == entries["/usr/bin/python3.11"]._replace(
        path="/usr/bin/python3.11-copy")


def test_the_same_tree_elsewhere_measures_the_same(tmp_path: Path) -> None:
    plan_a = tree(tmp_path / "a")
    plan_b = tree(tmp_path / "b")
    os.chmod(tmp_path / "b", os.stat(tmp_path / "a").st_mode)
    assert measure(str(tmp_path / "a"), plan_a) == measure(str(tmp_path / "b"), plan_b)


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers are forked even if an earlier test left a thread of its own behind (the check
    that refuses to fork next to running threads guards the launcher and builds, not tests)."""
    monkeypatch.setattr(m, "_may_fork", lambda: True)
    monkeypatch.setattr(m, "_BATCH", 7)


def _many(root: Path) -> None:
    (root / "app/many").mkdir()
    for i in range(300):
        (root / f"app/many/{i:03}.py").write_bytes(b"%d" % i * (i + 1))


def test_worker_processes_and_the_caller_alone_give_the_same_entries(
        tmp_path: Path, forking: None) -> None:
    plan = tree(tmp_path)
    _many(tmp_path)
    forked = m.Measuring(str(tmp_path), plan, workers=3)
    assert len(forked._kids) == 3
    encoded = forked.encoded()
    alone = m.Measuring(str(tmp_path), plan, workers=0)
    assert not alone._kids
    assert alone.encoded() == encoded
    parallel = scan(str(tmp_path), plan, workers=2)
    assert scan(str(tmp_path), plan, workers=0) == parallel
    assert digest_of(parallel, plan) == measure(str(tmp_path), plan) == forked.digest()
    by_path = {e.path: e.value for e in parallel}
    assert by_path["/app/many/007.py"] == hashlib.sha256(b"7" * 8).hexdigest()


def test_files_of_every_size_are_hashed_whole(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    sizes = (0, 1, m._CHUNK - 1, m._CHUNK, m._CHUNK + 1, 3 * m._CHUNK + 5)
    for n in sizes:
        (tmp_path / f"app/f{n}").write_bytes(os.urandom(n))
    entries = {e.path: e.value for e in scan(str(tmp_path), plan)}
    for n in sizes:
        want = hashlib.sha256((tmp_path / f"app/f{n}").read_bytes()).hexdigest()
        assert entries[f"/app/f{n}"] == want, n


def test_a_workers_error_is_the_measurements_error(tmp_path: Path, forking: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tree(tmp_path)
    _many(tmp_path)
    parent = os.getpid()
    real = m._encode

    def failing(items: list[tuple[bytes, bytes, int]], root_dev: int) -> bytes:
        if os.getpid() != parent:
            raise MeasurementError(f"cannot read {os.fsdecode(items[0][0])}: Input/output error")
        time.sleep(0.01)  # the worker surely takes a batch
        return real(items, root_dev)

    monkeypatch.setattr(m, "_encode", failing)
    with pytest.raises(MeasurementError, match=r"cannot read /.*: Input/output error"):
        measure(str(tmp_path), plan, workers=2)


def test_a_worker_that_dies_fails_the_measurement(tmp_path: Path, forking: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tree(tmp_path)
    _many(tmp_path)
    parent = os.getpid()
    real = m._encode

    def dying(items: list[tuple[bytes, bytes, int]], root_dev: int) -> bytes:
        if os.getpid() != parent:
            os.kill(os.getpid(), 9)
        time.sleep(0.01)
        return real(items, root_dev)

    monkeypatch.setattr(m, "_encode", dying)
    with pytest.raises(MeasurementError, match="ended before its work was done"):
        measure(str(tmp_path), plan, workers=1)


def test_a_measurement_given_up_on_leaves_no_worker(tmp_path: Path, forking: None) -> None:
    plan = tree(tmp_path)
    _many(tmp_path)
    measuring = m.Measuring(str(tmp_path), plan, workers=2)
    pids = [pid for pid, _ in measuring._kids]
    assert len(pids) == 2
    measuring.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_missing_root_and_unreadable_files_are_errors(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    plan.roots = ["/", "/nonexistent"]
    with pytest.raises(MissingFileError):
        measure(str(tmp_path), plan)
    plan.roots = ["/"]
    if os.geteuid() != 0:  # root reads anything
        (tmp_path / "app/main.py").chmod(0)
        with pytest.raises(MeasurementError, match=re.escape("/app/main.py")):
            measure(str(tmp_path), plan)


def test_a_file_swapped_for_a_link_after_listing_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", tmp_path / "link")
    with pytest.raises(MeasurementError, match="cannot read /link"):
        m._encode([(b"/link", os.fsencode(tmp_path / "link"), m._FILE)], 0)


@settings(max_examples=15, deadline=None)
@given(command=st.text(min_size=1, max_size=20), value=st.text(max_size=20),
       pwd=st.sampled_from(["/app", "/srv"]))
def test_command_pwd_and_local_env_are_measured(tmp_path_factory: pytest.TempPathFactory,
                                                command: str, value: str, pwd: str) -> None:
    root = tmp_path_factory.mktemp("m")
    plan = tree(root)
    entries = scan(str(root), plan)
    base = digest_of(entries, plan)
    variants = [
        MeasurementPlan(plan.roots, plan.command + command, plan.pwd, plan.local_env,
                        plan.exclude),
        MeasurementPlan(plan.roots, plan.command, plan.pwd, {**plan.local_env, "B": value},
                        plan.exclude),
        MeasurementPlan(plan.roots, plan.command, plan.pwd + "/x", plan.local_env,
                        plan.exclude),
    ]
    digests = {digest_of(entries, v) for v in variants}
    assert base not in digests and len(digests) == 3


def test_an_entry_that_changes_kind_while_measured_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    d, f, dev = os.fsencode(tmp_path / "d"), os.fsencode(tmp_path / "f"), os.lstat(tmp_path).st_dev
    for item in ((b"/d", d, m._FILE), (b"/d", d, m._OTHER), (b"/f", f, m._DIR),
                 (b"/f", f, m._OTHER)):
        with pytest.raises(MeasurementError, match=f"{item[0].decode()} changed while it was"):
            m._encode([item], dev)
    with pytest.raises(MeasurementError, match="/d is on another filesystem"):
        m._encode([(b"/d", d, m._DIR)], dev + 1)


def test_no_worker_is_forked_beside_a_running_thread(tmp_path: Path) -> None:
    """A fork copies only the calling thread; a lock another thread holds would never be
    released in the child. Beside a thread, the caller measures alone, to the same value."""
    import threading

    plan = tree(tmp_path)
    _many(tmp_path)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        measuring = m.Measuring(str(tmp_path), plan, workers=2)
        assert not measuring._kids
        assert measuring.digest() == measure(str(tmp_path), plan, workers=0)
    finally:
        stop.set()
        t.join()


def test_workers_follow_the_cpus_and_the_containers_cpu_quota(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert m._workers(str(quota)) == min(8, cpus)
    quota.write_text("50000 100000\n")  # half a CPU: one worker
    assert m._workers(str(quota)) == 1
    quota.write_text("150000 100000\n")
    assert m._workers(str(quota)) == min(2, cpus)
    assert m._workers(str(tmp_path / "none")) == min(8, cpus)


def test_a_record_cut_short_is_not_taken(tmp_path: Path, forking: None) -> None:
    """A worker killed while writing leaves a partial record: that batch counts as missing."""
    plan = tree(tmp_path)
    _many(tmp_path)
    measuring = m.Measuring(str(tmp_path), plan, workers=0)
    out = os.memfd_create("test")
    try:
        whole = m._record(0, b"line\0" * 10)
        os.write(out, m._record(1, b"x") + whole[:-3])
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        assert measuring._collect(pid, out) is None
        assert measuring._parts[1] == b"x" and measuring._parts[0] is None
    finally:
        os.close(out)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_closing_a_measurement_closes_its_own_descriptors_only(tmp_path: Path,
                                                               forking: None) -> None:
    """Done or given up on, closed once or twice: every descriptor it opened is closed, and
    no other (the launcher's standard streams stay open)."""
    plan = tree(tmp_path)
    _many(tmp_path)
    before = _fds()
    done = m.Measuring(str(tmp_path), plan, workers=2)
    assert done._kids
    done.digest()
    done.close()
    done.close()
    given_up = m.Measuring(str(tmp_path), plan, workers=2)
    given_up.close()
    given_up.close()
    assert _fds() == before
