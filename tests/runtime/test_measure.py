"""The measurement as the launcher computes it from a filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.runtime.measure import PLAN_PATH, MeasurementPlan, MissingFileError, measure, scan


def tree(root: Path) -> MeasurementPlan:
    (root / "app/pkg").mkdir(parents=True)
    (root / "app/main.py").write_text("print(1)\n")
    (root / "app/pkg/mod.py").write_text("X = 1\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_bytes(b"interp")
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "etc/veil").mkdir(parents=True)
    plan = MeasurementPlan(roots=["/app", "/usr/bin/python3", "/usr/bin/python3.11"],
                           command="python3 main.py", pwd="/app", local_env={"A": "1"},
                           exclude=["/app/injected.conf"])
    (root / PLAN_PATH.lstrip("/")).write_text(plan.to_json())
    return plan


def test_plan_round_trips(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    again = MeasurementPlan.from_json((tmp_path / PLAN_PATH.lstrip("/")).read_text())
    assert again == MeasurementPlan(sorted(plan.roots), plan.command, plan.pwd, plan.local_env,
                                    plan.exclude)


def test_entries_are_files_and_links(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    entries = {e.path: e for e in scan(str(tmp_path), plan)}
    assert set(entries) == {"/app/main.py", "/app/pkg/mod.py", "/usr/bin/python3",
                            "/usr/bin/python3.11"}
    assert entries["/usr/bin/python3"].mode == "link"


@pytest.mark.parametrize("tamper", [
    lambda r: (r / "app/main.py").write_text("print(2)\n"),
    lambda r: (r / "app/pkg/extra.py").write_text(""),
    lambda r: os.chmod(r / "app/main.py", 0o755),
    lambda r: ((r / "usr/bin/python3").unlink(), (r / "usr/bin/python3").symlink_to("/tmp/x")),
    lambda r: ((r / "app/pkg/__pycache__").mkdir(),
               (r / "app/pkg/__pycache__/m.pyc").write_bytes(b"")),
])
def test_any_tampering_changes_the_measurement(tmp_path: Path, tamper: object) -> None:
    plan = tree(tmp_path)
    before = measure(str(tmp_path), plan)
    tamper(tmp_path)  # type: ignore[operator]
    assert measure(str(tmp_path), plan) != before


def test_excluded_and_unmeasured_paths_do_not_count(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    before = measure(str(tmp_path), plan)
    (tmp_path / "app/injected.conf").write_text("secret-free test content")
    (tmp_path / "etc/other.conf").write_text("not measured")
    assert measure(str(tmp_path), plan) == before


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    plan = tree(tmp_path)
    (tmp_path / "usr/bin/python3.11").unlink()
    with pytest.raises(MissingFileError):
        measure(str(tmp_path), plan)


@settings(max_examples=30, deadline=None)
@given(command=st.text(min_size=1, max_size=20), value=st.text(max_size=20))
def test_command_and_local_env_are_measured(tmp_path_factory: pytest.TempPathFactory,
                                            command: str, value: str) -> None:
    root = tmp_path_factory.mktemp("m")
    plan = tree(root)
    base = measure(str(root), plan)
    changed_cmd = MeasurementPlan(plan.roots, plan.command + command, plan.pwd, plan.local_env,
                                  plan.exclude)
    changed_env = MeasurementPlan(plan.roots, plan.command, plan.pwd,
                                  {**plan.local_env, "B": value}, plan.exclude)
    assert measure(str(root), changed_cmd) != base
    assert measure(str(root), changed_env) != base
