"""The mesh's additions to the derived sessions: `services[].image_secrets` files and
`extra_policies`.

An `image_secrets` file is a YAML list of secret definitions (session language) added to that
service's session. As sconectl does, `{{namespace}}` in it is filled in as text before the file
is parsed. A path is relative to the mesh file. An `extra_policies` entry is a session document
written inline, or the path of a file holding one (with `{{namespace}}` filled in the same way).
Every problem is reported with its file and line.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from veil.errors import ManifestError, Problem
from veil.manifest.load import Loaded, plain
from veil.manifest.models import Mesh
from veil.session.load import load_session, session_from_data
from veil.session.model import SecretDef, SessionDoc

__all__ = ["extra_policies", "image_secrets"]


def _base(doc: Loaded) -> Path:
    return Path(doc.file).parent if doc.file not in ("<stdin>", "<input>") else Path(".")


def _read(doc: Loaded, rel: str, path: tuple[str | int, ...], what: str,
          problems: list[Problem]) -> tuple[str, str] | None:
    file = _base(doc) / rel
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        problems.append(doc.positions.problem(
            f"{what} {rel}: cannot read {file}: {err.strerror or err}", path, value=rel,
            allowed="a readable file, relative to the mesh file"))
        return None
    namespace = doc.model.policy.namespace
    return str(file), text.replace("{{namespace}}", namespace).replace("{{ namespace }}",
                                                                         namespace)


def _secrets_of(file: str, text: str, problems: list[Problem]) -> list[SecretDef]:
    try:
        tree = YAML(typ="rt").load(io.StringIO(text))
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problems.append(Problem(f"not valid YAML: {getattr(err, 'problem', None) or err}",
                                file=file, line=mark.line + 1 if mark else None))
        return []
    if tree is None:
        return []
    if isinstance(tree, dict) and "secrets" in tree:
        tree = tree["secrets"]  # also accepted: `secrets:` holding the list
    if not isinstance(tree, list):
        problems.append(Problem("an image_secrets file holds a list of secret definitions",
                                file=file, line=1, allowed="- name: ...\n  kind: ..."))
        return []
    data = {"name": "image-secrets", "secrets": plain(tree)}
    try:
        session = session_from_data(data, file=file, tree={"secrets": tree})
    except ManifestError as err:
        problems.extend(err.problems)
        return []
    return list(session.secrets)


def image_secrets(doc: Loaded) -> dict[str, list[SecretDef]]:
    """Service name → the secret definitions its `image_secrets` file adds."""
    mesh: Mesh = doc.model
    problems: list[Problem] = []
    out: dict[str, list[SecretDef]] = {}
    for i, s in enumerate(mesh.services):
        if not s.image_secrets:
            continue
        read = _read(doc, s.image_secrets, ("services", i, "image_secrets"),
                     f"service `{s.name}`: image_secrets", problems)
        if read is not None:
            out[s.name] = _secrets_of(*read, problems)
    if problems:
        raise ManifestError(problems, summary=f"image_secrets of {doc.file}")
    return out


def extra_policies(doc: Loaded) -> list[SessionDoc]:
    mesh: Mesh = doc.model
    problems: list[Problem] = []
    out: list[SessionDoc] = []
    for i, item in enumerate(mesh.extra_policies):
        path: tuple[str | int, ...] = ("extra_policies", i)
        try:
            if isinstance(item, str):
                read = _read(doc, item, path, "extra_policies", problems)
                if read is not None:
                    out.append(load_session(read[1], read[0]))
            elif isinstance(item, dict):
                tree: Any = doc.positions.node(path)
                out.append(session_from_data(item, file=doc.file, tree=tree))
            else:
                problems.append(doc.positions.problem(
                    "an extra policy is a session document or the path of a file holding one",
                    path, allowed="a mapping (version, name, services, secrets, ...) or a path"))
        except ManifestError as err:
            problems.extend(err.problems)
    if problems:
        raise ManifestError(problems, summary=f"extra_policies of {doc.file}")
    return out
