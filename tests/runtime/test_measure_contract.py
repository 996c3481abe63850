"""The measurement's contract through its public functions only (so that it holds whatever
the implementation does for speed): the plan's version and text, which paths an exclusion
covers, and that excluded paths never count while their namesakes do. scripts/mutation.sh
runs these with tests/runtime/test_measure.py against every mutant of measure.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from veil.runtime.measure import (
    VERSION,
    MeasurementError,
    MeasurementPlan,
    is_excluded,
    measure,
    scan,
)


def _plan(**kw: object) -> MeasurementPlan:
    args: dict[str, object] = {"roots": ["/"], "command": "python3 main.py", "pwd": "/app",
                               "local_env": {"A": "1"}, "exclude": ["/tmp"], "host_paths": []}
    args.update(kw)
    return MeasurementPlan(**args)  # type: ignore[arg-type]


def test_the_plan_is_version_2_and_reads_back() -> None:
    plan = _plan(exclude=["/tmp/", "/etc/app.conf"], host_paths=["/data"])
    text = plan.to_json()
    doc = json.loads(text)
    assert VERSION == 2 and doc["version"] == 2  # images built with version 1 must be rebuilt
    assert doc["exclude"] == ["/etc/app.conf", "/tmp"] and doc["host_paths"] == ["/data"]
    assert text.endswith("\n") and list(doc) == sorted(doc)  # stable text in the image
    back = MeasurementPlan.from_json(text)
    assert back.canonical() == plan.canonical()
    with pytest.raises(ValueError, match="unsupported measurement plan version 1"):
        MeasurementPlan.from_json(json.dumps({**doc, "version": 1}))


def test_the_canonical_plan_is_sorted_compact_utf8() -> None:
    plan = _plan(command="python3 mäin.py", local_env={"B": "2", "A": "1"})
    text = plan.canonical().decode("utf-8")
    assert "mäin.py" in text and " " not in text.replace("python3 mäin.py", "")
    doc = json.loads(text)
    assert list(doc) == sorted(doc) and list(doc["local_env"]) == ["A", "B"]


@pytest.mark.parametrize(("path", "exclude", "covered"), [
    ("/tmp", ["/tmp"], True),
    ("/tmp/x/y", ["/tmp"], True),
    ("/tmp/x", ["/tmp/"], True),
    ("/a/../tmp/x", ["/tmp"], True),
    ("/tmpx", ["/tmp"], False),
    ("/", ["/tmp"], False),
    ("/etc/app.conf", ["/etc/app.conf", "/run"], True),
    ("/etc/app.conf.bak", ["/etc/app.conf"], False),
])
def test_what_an_exclusion_covers(path: str, exclude: list[str], covered: bool) -> None:
    assert is_excluded(path, exclude) is covered
    assert is_excluded(path, tuple(exclude)) is covered


def test_an_excluded_path_never_counts_its_namesake_does(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "tmp").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("print(1)\n")
    plan = _plan(roots=["/app", "/tmp"], exclude=["/tmp", "/app/cache"])
    first = measure(str(root), plan)
    (root / "tmp" / "scratch").write_text("changes every run\n")
    (root / "app" / "cache").mkdir()
    (root / "app" / "cache" / "x").write_text("y\n")
    assert measure(str(root), plan) == first
    (root / "app" / "cache.py").write_text("import os\n")  # beside the excluded name
    assert measure(str(root), plan) != first


def test_plans_compare_by_what_they_say() -> None:
    plan = _plan()
    assert MeasurementPlan.from_json(plan.to_json()) == plan
    assert _plan(pwd="/other") != plan and _plan(exclude=["/var/tmp"]) != plan


def test_a_root_that_is_a_single_file(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print(1)\n")
    plan = _plan(roots=["/app/main.py"], exclude=[])
    first = measure(str(root), plan)
    (root / "app" / "other.py").write_text("not a root\n")
    assert measure(str(root), plan) == first
    (root / "app" / "main.py").write_text("print(2)\n")
    assert measure(str(root), plan) != first


def test_a_root_after_an_excluded_one_is_still_measured(tmp_path: Path) -> None:
    root = tmp_path / "img"
    for d in ("a", "b"):
        (root / d).mkdir(parents=True)
        (root / d / "f").write_text("1\n")
    plan = _plan(roots=["/a", "/b"], exclude=["/a"])
    assert [e.path for e in scan(str(root), plan)] == ["/b", "/b/f"]
    first = measure(str(root), plan)
    (root / "b" / "f").write_text("2\n")
    assert measure(str(root), plan) != first


def test_overlapping_roots_measure_each_entry_once(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "app" / "pkg").mkdir(parents=True)
    (root / "app" / "pkg" / "mod.py").write_text("X = 1\n")
    whole = _plan(roots=["/"], exclude=[])
    overlapping = _plan(roots=["/app", "/", "/app/pkg"], exclude=[])
    assert scan(str(root), overlapping) == scan(str(root), whole)
    assert [e.path for e in scan(str(root), _plan(roots=["/app/pkg", "/app"], exclude=[]))] == [
        "/app", "/app/pkg", "/app/pkg/mod.py"]


def test_a_link_to_a_folder_is_measured_as_a_link_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "data").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "data" / "x").write_text("outside the root\n")
    (root / "app" / "dl").symlink_to("/data")
    (root / "app" / "rel").symlink_to("../data")
    plan = _plan(roots=["/app"], exclude=[])
    entries = {e.path: (e.kind, e.value) for e in scan(str(root), plan)}
    assert entries == {"/app": ("d", ""), "/app/dl": ("l", "/data"),
                       "/app/rel": ("l", "../data")}
    first = measure(str(root), plan)
    (root / "data" / "x").write_text("not measured\n")
    assert measure(str(root), plan) == first


def test_scan_reports_each_entrys_own_owner_and_group(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files other owners needs root")
    root = tmp_path / "img"
    (root / "app").mkdir(parents=True)
    owners = {"a": (1001, 2002), "b": (3003, 4004), "c": (0, 5005)}
    for name, (uid, gid) in owners.items():
        (root / "app" / name).write_text(name)
        os.chown(root / "app" / name, uid, gid)
    os.chown(root / "app", 6006, 7007)
    entries = {e.path: (e.uid, e.gid) for e in scan(str(root), _plan(roots=["/app"]))}
    assert entries == {"/app": (6006, 7007), **{f"/app/{n}": o for n, o in owners.items()}}


def test_a_root_below_a_file_is_a_measurement_error(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print(1)\n")
    with pytest.raises(MeasurementError, match=r"cannot read /app/main\.py/x"):
        measure(str(root), _plan(roots=["/app/main.py/x"]))


def test_a_device_is_measured_by_its_number(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "app").mkdir(parents=True)
    try:
        os.mknod(root / "app" / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node is not allowed here")
    entries = {e.path: e for e in scan(str(root), _plan(roots=["/app"]))}
    assert (entries["/app/null"].kind, entries["/app/null"].value) == ("c", "1:3")
