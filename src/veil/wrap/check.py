"""The entrypoint check at wrap time: a missing module, a missing function or a wrong signature
is reported now, with file and line, not at the first request.

The customer's module is imported in a separate Python process with the repository first on
`sys.path` (its import runs the customer's code, which must not touch Veil's process). When the
import fails only because a third-party dependency is not installed on this machine, the module
is checked statically instead (parsed, not run) and a warning says so.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.errors import ManifestError, Problem, UserError
from veil.wrap.runner import entry

__all__ = ["EntrypointReport", "check_entrypoint"]

_ENTRY_SCRIPT = Path(entry.__file__)
_ALLOWED = "module:callable in the repository; a function of one parameter (the payload), or a " \
    "class with a no-argument constructor, optional load() and predict(payload)"


@dataclass
class EntrypointReport:
    kind: str  # "function", "class", or "unknown" when only checked statically
    description: str = ""
    warnings: list[Problem] = field(default_factory=list)


def _rel(repo: Path, file: str | None) -> str:
    if not file:
        return str(repo)
    try:
        return str(Path(file).resolve().relative_to(repo.resolve()))
    except ValueError:
        return file


def _problem(repo: Path, spec: str, info: dict[str, Any], severity: str = "error") -> Problem:
    return Problem(
        str(info.get("message", "entrypoint check failed")),
        file=_rel(repo, info.get("file")),
        line=info.get("line") or None,
        path="entrypoint",
        value=spec,
        allowed=_ALLOWED,
        severity="warning" if severity == "warning" else "error",
    )


def check_entrypoint(repo_dir: Path, spec: str, *, timeout: float = 120.0) -> EntrypointReport:
    """Raise ManifestError if `spec` cannot be wrapped; return what was found otherwise."""
    repo = repo_dir.resolve()
    try:
        entry.parse_spec(spec)
    except entry.EntrypointError as err:
        raise ManifestError([_problem(repo, spec, err.info)], summary=_summary(spec)) from None
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # leave the customer's tree untouched
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(_ENTRY_SCRIPT), "check", spec, str(repo)],
            cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"importing the entrypoint {spec} took more than {timeout:.0f} s",
            hint="module-level code should not do heavy work; put it in a class's load()",
        ) from None
    result = _last_json(proc.stdout)
    if result is None:
        raise UserError(
            f"checking the entrypoint {spec} crashed (exit code {proc.returncode})",
            hint=proc.stderr.strip()[-2000:] or None,
        )
    if result.get("ok"):
        return EntrypointReport(str(result["kind"]), str(result.get("description") or ""))
    if result.get("kind") == "missing-dependency":
        warning = _problem(repo, spec, {
            **result,
            "message": f"{result['message']} here; checked the entrypoint statically only",
        }, "warning")
        problems = _static_check(repo, spec)
        if problems:
            raise ManifestError(problems, summary=_summary(spec))
        return EntrypointReport("unknown", warnings=[warning])
    raise ManifestError([_problem(repo, spec, result)], summary=_summary(spec))


def _summary(spec: str) -> str:
    return f"the entrypoint {spec} cannot be wrapped"


def _last_json(stdout: str) -> dict[str, Any] | None:
    # The customer's module may print while it is imported: the verdict is the last line.
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _static_check(repo: Path, spec: str) -> list[Problem]:
    module, attr = entry.parse_spec(spec)
    base = repo.joinpath(*module.split("."))
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    if path is None:
        return [_problem(repo, spec, {"message": f"module {module!r} not found"})]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:
        return [_problem(repo, spec, {"message": f"syntax error: {err.msg}", "file": str(path),
                                      "line": err.lineno})]
    defined = False
    for node in tree.body:
        names = _bound_names(node)
        if attr not in names:
            continue
        defined = True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == attr:
            msg = _static_signature(node.args, attr, drop_self=False)
            if msg:
                return [_problem(repo, spec, {"message": msg, "file": str(path),
                                              "line": node.lineno})]
        if isinstance(node, ast.ClassDef) and node.name == attr:
            methods = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
            if "predict" not in methods and not node.bases:
                return [_problem(repo, spec, {"message": f"class {attr} has no method predict",
                                              "file": str(path), "line": node.lineno})]
            if "predict" in methods:
                msg = _static_signature(methods["predict"].args, f"{attr}.predict", drop_self=True)
                if msg:
                    return [_problem(repo, spec, {"message": msg, "file": str(path),
                                                  "line": methods["predict"].lineno})]
    if not defined:
        return [_problem(repo, spec, {"message": f"module {module!r} defines no {attr!r}",
                                      "file": str(path)})]
    return []


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {t.id for t in targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return set()


def _static_signature(args: ast.arguments, what: str, *, drop_self: bool) -> str | None:
    positional = [*args.posonlyargs, *args.args][1 if drop_self else 0:]
    required = len(positional) - len(args.defaults)
    kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if kwonly:
        return f"{what} requires keyword-only parameter(s) {', '.join(kwonly)}"
    if required > 1:
        return f"{what} requires {required} positional parameters; it is called with one"
    if not positional and args.vararg is None:
        return f"{what} takes no parameter; it is called with one (the payload)"
    return None
