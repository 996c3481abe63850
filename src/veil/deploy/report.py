"""A pre-deploy report as JSON-ready data (for `-o json` and the HTTP API) and as table rows."""

from __future__ import annotations

from typing import Any

from veil.deploy.checks import Report
from veil.deploy.envcheck import PHASES
from veil.errors import Problem

__all__ = ["ENV_COLUMNS", "env_rows", "problem_json", "report_json"]

ENV_COLUMNS = ("variable", "needed by", *PHASES, "status")


def problem_json(p: Problem) -> dict[str, Any]:
    return {"severity": p.severity, "message": p.message, "file": p.file, "line": p.line,
            "column": p.column, "path": p.path, "allowed": p.allowed,
            "text": p.render()}


def env_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per variable: name, readers, a mark per phase that supplies it, status."""
    if report.env is None:
        return []
    rows = []
    for row in report.env.rows:
        marks = tuple("yes" if p in row.phases else "-" for p in PHASES)
        status = row.status + (f" ({row.note})" if row.note and row.status == "default" else "")
        rows.append((row.name, "; ".join(row.needed_by), *marks, status))
    return rows


def report_json(report: Report) -> dict[str, Any]:
    image = report.image
    return {
        "ok": not report.errors,
        "image": None if image is None else {
            "reference": str(image.reference), "digest": image.digest, "pulled": image.pinned,
        },
        "sidecars": dict(sorted(report.sidecars.items())),
        "role_arn": report.role_arn,
        "env": [] if report.env is None else [
            {"name": r.name, "needed_by": r.needed_by, "required": r.required,
             "phases": r.phases, "status": r.status, "note": r.note}
            for r in report.env.rows
        ],
        "errors": [problem_json(p) for p in report.errors],
        "warnings": [problem_json(p) for p in report.warnings],
    }
