"""Checks across fields that the models cannot express: duplicate names, secret references,
leftover shell variables, template syntax, CAS roles and tolerance flags.

Every check reports into the same collector as the model validation, with the position of the
offending node, so a user sees every problem of a document in one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from veil.errors import ProblemCollector
from veil.manifest.casmode import CAS_MODES, REFUSED_MODES
from veil.manifest.imageref import FORM, reference_problem
from veil.manifest.models import CAS_ALIASES, GenService
from veil.manifest.refs import FORMATS, find_secret_refs
from veil.manifest.tolerance import parse_tolerance

if TYPE_CHECKING:
    from veil.manifest.load import Loaded, Positions

__all__ = ["SHELL_VAR_RE", "check_document", "shell_vars", "walk_strings"]

# `$VAR` / `${VAR}` as envsubst would replace them; `$$SCONE::...$$` is removed first.
SHELL_VAR_RE = re.compile(r"\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")
_ENVSUBST_HINT = "did you run envsubst? (`envsubst < mesh.yaml.template > mesh.yaml`)"


def shell_vars(text: str) -> list[str]:
    """Shell-style variables left in `text`, ignoring CAS secret references."""
    for ref in reversed(find_secret_refs(text)):
        text = text[: ref.start] + " " + text[ref.end:]
    return [m.group(0) for m in SHELL_VAR_RE.finditer(text)]


def walk_strings(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[
        tuple[tuple[str | int, ...], str]]:
    """Every string value of the tree with its path."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, (*path, i))
    elif isinstance(node, str):
        yield path, str(node)


def _is_strict_path(kind: str, path: tuple[str | int, ...]) -> bool:
    """Values where a leftover `$VAR` can only be a mistake: image references, namespaces, URLs."""
    if kind == "genservice":
        return path in (("build", "to"), ("build", "from"), ("build", "stable"))
    if len(path) == 3 and path[0] == "services" and path[2] == "image":
        return True
    if len(path) == 3 and path[0] == "cas" and path[2] == "cas_url":
        return True
    return path in (("policy", "namespace"), ("repo", "destination"))


def _check_shell_vars(loaded: Loaded, col: ProblemCollector) -> None:
    pos = loaded.positions
    for path, text in walk_strings(loaded.tree):
        found = shell_vars(text)
        if not found:
            continue
        names = ", ".join(dict.fromkeys(found))
        if _is_strict_path(loaded.kind, path):
            col.extend([pos.problem(f"unexpanded shell variable {names}; {_ENVSUBST_HINT}",
                                    path, value=text,
                                    allowed="a concrete value without $VAR")])
        else:
            col.extend([pos.problem(
                f"value contains {names}; Veil does not expand shell variables "
                "(fine if intended, else run envsubst first)", path, severity="warning")])


def _check_templates(loaded: Loaded, col: ProblemCollector) -> None:
    pos = loaded.positions
    env = None
    for path, text in walk_strings(loaded.tree):
        if "{{" not in text and "{%" not in text:
            continue
        import jinja2  # only for a document with templates (start-up time)

        env = env or jinja2.Environment(autoescape=False)
        try:
            env.parse(text)
        except jinja2.TemplateSyntaxError as err:
            col.extend([pos.problem(f"template syntax error: {err.message}", path, value=text,
                                    allowed="{{name}} or {{ name | default(value=\"x\") }}")])


def _check_refs_syntax(loaded: Loaded, col: ProblemCollector) -> None:
    pos = loaded.positions
    for path, text in walk_strings(loaded.tree):
        for ref in find_secret_refs(text):
            if not ref.valid_format:
                col.extend([pos.problem(f"unknown format `{ref.format}` in {ref.text}", path,
                                        value=text, allowed=", ".join(sorted(FORMATS)))])


def _duplicates(pos: Positions, col: ProblemCollector, items: list[tuple[str, tuple[
        str | int, ...]]], what: str) -> None:
    seen: dict[str, tuple[str | int, ...]] = {}
    for name, path in items:
        if name in seen:
            line, _ = pos.at(seen[name])
            col.extend([pos.problem(f"duplicate {what} `{name}` (first defined at line {line})",
                                    path, value=name, allowed=f"unique {what}s")])
        else:
            seen[name] = path


def _items(node: Any, *keys: str) -> list[tuple[int, dict[str, Any]]]:
    """The mapping items of the list at `keys`, tolerating any shape (the model may have failed)."""
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    if not isinstance(node, list):
        return []
    return [(i, v) for i, v in enumerate(node) if isinstance(v, dict)]


def _names(node: Any, *keys: str) -> list[tuple[str, tuple[str | int, ...]]]:
    return [(str(v["name"]), (*keys, i, "name")) for i, v in _items(node, *keys)
            if isinstance(v.get("name"), str)]


def secret_names(svc: GenService) -> set[str]:
    """Names a reference in this service may use: defined or imported secrets."""
    return _secret_names([s.name for s in svc.secrets.all()], list(svc.secrets.import_))


def _secret_names(defined: list[str], imports: list[str]) -> set[str]:
    names = set(defined)
    for imp in imports:
        names.add(imp)
        names.add(imp.rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    return names


def _check_genservice(loaded: Loaded, col: ProblemCollector) -> None:
    pos, tree = loaded.positions, loaded.tree
    if "requirements" in tree:
        col.extend([pos.problem(
            "a top-level `requirements` is deprecated; it is used as build.requirements — "
            "move it there", ("requirements",), key=True, severity="warning")])
    _duplicates(pos, col, _names(tree, "environment", "local")
                + _names(tree, "environment", "global"), "environment variable")
    _duplicates(pos, col, _names(tree, "secrets", "global") + _names(tree, "secrets", "local"),
                "secret")
    _duplicates(pos, col, [(str(f["path"]), ("injection_files", i, "path"))
                           for i, f in _items(tree, "injection_files")
                           if isinstance(f.get("path"), str)], "injection file path")
    secrets = tree.get("secrets") if isinstance(tree.get("secrets"), dict) else {}
    raw_imports = secrets.get("import")
    imports: list[Any] = raw_imports if isinstance(raw_imports, list) else []
    known = _secret_names([n for n, _ in _names(tree, "secrets", "global")
                           + _names(tree, "secrets", "local")],
                          [str(i) for i in imports if isinstance(i, str)])
    allowed = ", ".join(sorted(known)) or "none defined: add it under secrets.global or .local"
    for path, text in walk_strings(tree):
        if path[:1] not in (("environment",), ("injection_files",)):
            continue
        for ref in find_secret_refs(text):
            if ref.name not in known:
                col.extend([pos.problem(f"reference to undefined secret `{ref.name}`", path,
                                        value=ref.text, allowed=allowed)])
    for section in ("global", "local"):
        for i, s in _items(tree, "secrets", section):
            for attr in ("issuer", "private_key"):
                target = s.get(attr)
                if isinstance(target, str) and target not in known:
                    col.extend([pos.problem(f"`{attr}` names undefined secret `{target}`",
                                            ("secrets", section, i, attr), value=target,
                                            allowed=allowed)])


# Names that become part of CAS session names and config ids (`namespace/session/service`):
# the rule CAS applies to them, so that a mesh that validates here is accepted there.
_SESSION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_SESSION_NAME_ALLOWED = ("letters, digits, _ . - (starting with a letter, digit or _; "
                         "no / or spaces)")


def _check_session_names(loaded: Loaded, col: ProblemCollector) -> None:
    tree = loaded.tree
    found: list[tuple[tuple[str | int, ...], Any, str]] = []
    policy = tree.get("policy")
    if isinstance(policy, dict):
        found.append((("policy", "namespace"), policy.get("namespace"), "namespace"))
    found += [(("services", i, "name"), item.get("name"), "service name")
              for i, item in _items(tree, "services")]
    for path, value, what in found:
        if isinstance(value, str) and value and not shell_vars(value) \
                and not _SESSION_NAME.fullmatch(value):
            col.extend([loaded.positions.problem(
                f"not a usable {what}: it becomes part of CAS session names", path,
                value=value, allowed=_SESSION_NAME_ALLOWED)])


def _check_mesh(loaded: Loaded, col: ProblemCollector) -> None:
    pos, tree = loaded.positions, loaded.tree
    _check_session_names(loaded, col)
    services = _names(tree, "services")
    _duplicates(pos, col, services, "service name")
    _duplicates(pos, col, _names(tree, "cas"), "CAS name")
    targets = ["global", "helm", *dict.fromkeys(n for n, _ in services)]
    for i, item in _items(tree, "env"):
        svc = item.get("service")
        if isinstance(svc, str) and svc not in targets:
            col.extend([pos.problem(f"env section for unknown service `{svc}`",
                                    ("env", i, "service"), value=svc,
                                    allowed=", ".join(targets))])
    roles: dict[str, int] = {}
    cas_items = _items(tree, "cas")
    for i, cas in cas_items:
        alias = cas.get("alias")
        roles_given: list[Any] = alias if isinstance(alias, list) else []
        for role in (r for r in roles_given if isinstance(r, str)):
            if role in roles:
                col.extend([pos.problem(f"role `{role}` is given to two CAS entries",
                                        ("cas", i, "alias"), value=str(role),
                                        allowed="each role on at most one CAS")])
            roles[str(role)] = i
        mode = cas.get("mode")
        if isinstance(mode, str) and mode in CAS_MODES:
            col.extend([pos.problem(f"mode {mode}: {CAS_MODES[mode]}", ("cas", i, "mode"),
                                    severity="warning")])
        elif isinstance(mode, str) and mode in REFUSED_MODES:
            col.extend([pos.problem(f"mode {mode} is not supported: {REFUSED_MODES[mode]}",
                                    ("cas", i, "mode"), value=mode,
                                    allowed="EncryptedManifest, SignedManifest, or no mode")])
        tolerance = cas.get("tolerance")
        if isinstance(tolerance, str):
            for flag in parse_tolerance(tolerance).unknown:
                col.extend([pos.problem(
                    f"tolerance flag {flag} is not known to Veil and is ignored",
                    ("cas", i, "tolerance"), severity="warning")])
    if len(cas_items) > 1 and "security" not in roles:
        col.extend([pos.problem("no CAS has the `security` role; with several CAS entries "
                                "one must say where the sessions go", ("cas",),
                                allowed="alias: [" + ", ".join(CAS_ALIASES) + "]")])


def _check_images(loaded: Loaded, col: ProblemCollector) -> None:
    """Image references have the form a registry accepts; `$VAR` ones are reported above."""
    found: list[tuple[tuple[str | int, ...], Any]] = []
    if loaded.kind == "genservice":
        build = loaded.tree.get("build")
        if isinstance(build, dict):
            found = [(("build", k), build.get(k)) for k in ("to", "from", "stable")]
    else:
        found = [(("services", i, "image"), item.get("image"))
                 for i, item in _items(loaded.tree, "services")]
    for path, value in found:
        if isinstance(value, str) and not shell_vars(value):
            why = reference_problem(value.strip())
            if why:
                col.extend([loaded.positions.problem(
                    f"not an image reference: {why}", path, value=value, allowed=FORM)])


def check_document(loaded: Loaded, col: ProblemCollector) -> None:
    """All cross-field checks of one document (the model may be None if it did not validate)."""
    _check_shell_vars(loaded, col)
    _check_templates(loaded, col)
    _check_refs_syntax(loaded, col)
    _check_images(loaded, col)
    if loaded.kind == "genservice":
        _check_genservice(loaded, col)
    elif loaded.kind == "mesh":
        _check_mesh(loaded, col)
