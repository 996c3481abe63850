"""Load the customer's entrypoint (`module:function` or `module:Class`) and check its shape.

Standard library only, and no imports of sibling modules: besides being imported by the runners,
this file is run as a script (`python3 entry.py check SPEC REPO`) by `veil wrap` to import the
customer's module in a separate process, and by the platform's Dockerfiles at build time, so a
wrong entrypoint fails the build instead of the first request.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["EntrypointError", "Model", "check", "parse_spec"]

Predict = Callable[[Any], Any]


class EntrypointError(Exception):
    """The entrypoint cannot be used; `info` says where and why (JSON-able)."""

    def __init__(self, message: str, **info: Any) -> None:
        super().__init__(message)
        self.info: dict[str, Any] = {"message": message, **info}


def parse_spec(spec: str) -> tuple[str, str]:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr or not attr.isidentifier() or not all(
        part.isidentifier() for part in module.split(".")
    ):
        raise EntrypointError(
            f"entrypoint {spec!r} is not of the form module:callable", kind="spec"
        )
    return module, attr


def _signature_problem(fn: Any, what: str, *, drop_self: bool) -> str | None:
    """Why `fn` cannot be called with exactly one positional argument, or None if it can."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # built-ins without a signature: nothing to check
    params = list(sig.parameters.values())
    if drop_self and params and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        params = params[1:]
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    star = any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params)
    required = [p.name for p in positional if p.default is inspect.Parameter.empty]
    kwonly = [
        p.name
        for p in params
        if p.kind == inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    shown = f"{what}{sig}"
    if kwonly:
        return f"{shown} requires keyword-only parameter(s) {', '.join(kwonly)}"
    if len(required) > 1:
        return f"{shown} requires {len(required)} positional parameters; it is called with one"
    if not positional and not star:
        return f"{shown} takes no parameter; it is called with one (the payload)"
    return None


def _source_location(obj: Any) -> dict[str, Any]:
    try:
        return {"file": inspect.getsourcefile(obj), "line": inspect.getsourcelines(obj)[1]}
    except (TypeError, OSError):
        return {}


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing == module or module.startswith(missing + "."):
            raise EntrypointError(
                f"module {module!r} not found (looked for {module.replace('.', '/')}.py "
                f"and {module.replace('.', '/')}/__init__.py)",
                kind="missing-module",
            ) from None
        raise EntrypointError(
            f"importing {module!r} failed: it needs {missing!r}, which is not installed",
            kind="missing-dependency",
            dependency=missing,
            **_innermost_frame(err),
        ) from None
    except SyntaxError as err:
        raise EntrypointError(
            f"syntax error in {module!r}: {err.msg}",
            kind="import-error",
            file=err.filename,
            line=err.lineno,
        ) from None
    except Exception as err:
        raise EntrypointError(
            f"importing {module!r} raised {type(err).__name__}: {err}",
            kind="import-error",
            **_innermost_frame(err),
        ) from None


def _innermost_frame(err: BaseException) -> dict[str, Any]:
    """The deepest traceback frame outside Python's own import machinery."""
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if not f.filename.startswith("<frozen") and f.filename != __file__
    ]
    return {"file": frames[-1].filename, "line": frames[-1].lineno} if frames else {}


class Model:
    """The customer's callable behind one `predict(payload)`; `load()` makes it ready."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        module, attr = parse_spec(spec)
        mod = _import(module)
        if not hasattr(mod, attr):
            raise EntrypointError(
                f"module {module!r} has no attribute {attr!r}",
                kind="missing-callable",
                **_source_location(mod),
            )
        target = getattr(mod, attr)
        self.is_class = inspect.isclass(target)
        self.description = inspect.getdoc(target) or ""
        self._target = target
        self.ready = False
        self.predict: Predict
        if self.is_class:
            self._check_class(target, attr)
        elif callable(target):
            problem = _signature_problem(target, attr, drop_self=False)
            if problem:
                raise EntrypointError(problem, kind="signature", **_source_location(target))
            self.predict = target
            self.ready = True  # a plain function has nothing to load
        else:
            raise EntrypointError(
                f"{spec} is a {type(target).__name__}, not a function or class",
                kind="not-callable",
            )

    @staticmethod
    def _check_class(cls: type, attr: str) -> None:
        where = _source_location(cls)
        try:
            init_required = [
                p.name
                for p in inspect.signature(cls).parameters.values()
                if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            ]
        except (TypeError, ValueError):
            init_required = []
        if init_required:
            raise EntrypointError(
                f"class {attr} needs constructor argument(s) {', '.join(init_required)}; "
                "it is created without arguments",
                kind="signature",
                **where,
            )
        predict = inspect.getattr_static(cls, "predict", None)
        if predict is None or not callable(getattr(cls, "predict", None)):
            raise EntrypointError(
                f"class {attr} has no method predict(payload)", kind="missing-callable", **where
            )
        is_static = isinstance(predict, staticmethod | classmethod)
        problem = _signature_problem(
            cls.predict, f"{attr}.predict", drop_self=not is_static  # type: ignore[attr-defined]
        )
        if problem:
            raise EntrypointError(
                problem, kind="signature", **_source_location(cls.predict)  # type: ignore[attr-defined]
            )
        load = getattr(cls, "load", None)
        if load is not None:
            if not callable(load):
                raise EntrypointError(f"{attr}.load is not a method", kind="signature", **where)
            try:
                params = list(inspect.signature(load).parameters.values())[1:]
            except (TypeError, ValueError):
                params = []
            needed = [
                p.name
                for p in params
                if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            ]
            if needed:
                raise EntrypointError(
                    f"{attr}.load needs argument(s) {', '.join(needed)}; it is called without",
                    kind="signature",
                    **_source_location(load),
                )

    def load(self) -> None:
        """Create the model object and run its `load()` once; ready afterwards."""
        if self.ready:
            return
        instance = self._target()
        loader = getattr(instance, "load", None)
        if loader is not None:
            loader()
        self.predict = instance.predict
        self.ready = True


def check(spec: str) -> dict[str, Any]:
    """Import and inspect the entrypoint without calling it (nor `load()`)."""
    try:
        model = Model(spec)
    except EntrypointError as err:
        return {"ok": False, **err.info}
    return {"ok": True, "kind": "class" if model.is_class else "function",
            "description": model.description}


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "check":
        print("usage: entry.py check MODULE:CALLABLE REPO_DIR", file=sys.stderr)
        return 2
    spec, repo = argv[1], os.path.abspath(argv[2])
    # The customer's modules come first; this file's own folder must not shadow them.
    sys.path[0] = repo
    os.chdir(repo)
    result = check(spec)
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
