"""A minimal image filesystem for launcher tests: one measured program and its plan."""

from __future__ import annotations

from pathlib import Path

from veil.runtime.measure import PLAN_PATH, MeasurementPlan, measure


def make_image_root(tmp_path: Path) -> tuple[Path, str]:
    """`tmp_path/root` with /app/main.py and its measurement plan; returns (root, measurement)."""
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "app/main.py").write_text("print('hi')\n")
    plan = MeasurementPlan(roots=["/app"], command="python3 main.py", pwd="/app", local_env={})
    (root / PLAN_PATH.lstrip("/")).parent.mkdir(parents=True)
    (root / PLAN_PATH.lstrip("/")).write_text(plan.to_json())
    return root, measure(str(root), plan)
