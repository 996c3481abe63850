"""Veil's exceptions.

    VeilError                 every error Veil raises on purpose
    ├── UserError             bad input: exit code 2, no traceback
    │   └── ManifestError     all problems of one document, each with file:line:col
    └── OperationalError      something Veil tried failed: exit code 1, says what to do

Third-party errors (httpx, subprocess, SQLAlchemy, ...) are translated into these at the
boundary of the module that calls them. Messages never hold a secret value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ManifestError",
    "OperationalError",
    "Problem",
    "ProblemCollector",
    "UserError",
    "VeilError",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in an input document."""

    message: str
    file: str = "<input>"
    line: int | None = None
    column: int | None = None
    path: str = ""
    value: Any = None
    allowed: str | None = None
    severity: Severity = "error"
    show_value: bool = True

    @property
    def location(self) -> str:
        loc = self.file
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        return loc

    def render(self) -> str:
        parts = [f"{self.location}: {self.severity}"]
        if self.path:
            parts.append(f" at {self.path}")
        parts.append(f": {self.message}")
        if self.show_value and self.value is not None:
            parts.append(f" (got {self.value!r})")
        if self.allowed:
            parts.append(f"; allowed: {self.allowed}")
        return "".join(parts)

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line or 0, self.column or 0, self.path)


class VeilError(Exception):
    """Root of every error Veil raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UserError(VeilError):
    """The input is wrong; the user can fix it. Exit code 2."""

    exit_code = 2


class ManifestError(UserError):
    """Every problem found in one or more documents, reported together."""

    def __init__(self, problems: Iterable[Problem], *, summary: str | None = None) -> None:
        self.problems: list[Problem] = sorted(
            (p for p in problems if p.severity == "error"), key=Problem.sort_key
        )
        self.warnings: list[Problem] = sorted(
            (p for p in problems if p.severity == "warning"), key=Problem.sort_key
        )
        n = len(self.problems)
        head = summary or f"{n} error{'s' if n != 1 else ''} in input"
        super().__init__(head)

    def render(self) -> str:
        lines = [self.message]
        lines.extend("  " + p.render() for p in self.problems)
        return "\n".join(lines)


@dataclass
class ProblemCollector:
    """Collects problems while validating so that all of them are reported at once."""

    file: str = "<input>"
    problems: list[Problem] = field(default_factory=list)

    def add(self, message: str, **kw: Any) -> None:
        kw.setdefault("file", self.file)
        self.problems.append(Problem(message, **kw))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self, summary: str | None = None) -> None:
        if self.errors:
            raise ManifestError(self.problems, summary=summary)


class OperationalError(VeilError):
    """Something Veil tried failed (a registry, buildah, CAS, a database). Exit code 1."""

    exit_code = 1
