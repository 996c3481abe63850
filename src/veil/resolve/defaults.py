"""`--print-defaults`: the mesh, plus an `env` entry for every variable its services declare.

The input is edited round-trip, so its comments and order survive. New entries go into the
`service: global` group (a global entry only reaches services that declare the variable), except
a variable whose defaults differ between services: that one is listed under each service. A
variable without a default gets `value: null` — a placeholder any other entry fills. `env` is
written last and its items start at column 0, so that appending a patch of `- service: NAME`
items (`cat mesh-2.yaml patch.yaml > mesh-3.yaml`) extends `env`, and the patch's entries, coming
later, win. Applying the output again gives the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.tokens import CommentToken

from veil.errors import ManifestError
from veil.manifest.description import ServiceDescription
from veil.manifest.load import Loaded, load_mesh
from veil.manifest.models import Mesh
from veil.resolve.env import mesh_entries

__all__ = ["Declared", "declared_variables", "print_defaults"]

REQUIRED = "required: no default"
DIFFERS = "defaults differ between services; a global entry will not override this one"


@dataclass(frozen=True)
class Declared:
    """A `global` variable of one or more services, with each service's default."""

    name: str
    defaults: tuple[tuple[str, str | None], ...]  # (service, default) in mesh order

    @property
    def services(self) -> list[str]:
        return [s for s, _ in self.defaults]

    @property
    def uniform(self) -> bool:
        return len({d for _, d in self.defaults}) == 1


def declared_variables(mesh: Mesh, descriptions: dict[str, ServiceDescription]) -> list[Declared]:
    """Every declared `global` variable, in order of first declaration."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for s in mesh.services:
        desc = descriptions.get(s.image)
        if desc is None:
            continue
        for g in desc.global_env:
            found.setdefault(g.name, []).append((s.name, g.value))
    return [Declared(n, tuple(d)) for n, d in found.items()]


def _represent_none(rep: RoundTripRepresenter, _: None) -> Any:
    # round-trip mode writes None as an empty value; the seeds' files say `null`
    return rep.represent_scalar("tag:yaml.org,2002:null", "null")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never fold a long value: the output is diffed and re-read
    y.indent(mapping=2, sequence=2, offset=0)
    y.representer.add_representer(type(None), _represent_none)
    return y


def _entry(name: str, value: str | None, comments: list[str]) -> CommentedMap:
    item = CommentedMap()
    item["name"] = name
    item["value"] = value
    if comments:
        item.yaml_add_eol_comment("; ".join(comments), "name")
    if value is None:
        item.yaml_add_eol_comment(REQUIRED, "value")
    return item


def _group(service: str) -> CommentedMap:
    g = CommentedMap()
    g["service"] = service
    g["env"] = CommentedSeq()
    return g


def _grouped_env(env: Any) -> CommentedSeq:
    """The env list with every run of flat `{name, value}` items wrapped in a global group."""
    if env is None:
        return CommentedSeq()
    if all(isinstance(i, dict) and "service" not in i for i in env):
        if not env:
            return CommentedSeq()
        g = CommentedMap()
        g["service"] = "global"
        g["env"] = env  # the same list object keeps its comments
        return CommentedSeq([g])
    out = CommentedSeq()
    run: CommentedSeq | None = None
    for item in env:
        if isinstance(item, dict) and "service" not in item:
            if run is None:
                g = _group("global")
                run = g["env"]
                out.append(g)
            run.append(item)
        else:
            run = None
            out.append(item)
    return out


class _Tail:
    """The comment after the last line of a node: its end-of-line part and the lines that follow.

    ruamel.yaml keeps the comment lines that precede a key at the end of the previous node, so
    moving `env` to the end means moving those lines too.
    """

    def __init__(self, tree: CommentedMap, key: Any) -> None:
        parent: Any = tree
        node: Any = tree[key]
        while isinstance(node, CommentedMap | CommentedSeq) and len(node):
            parent, key = node, (list(node.keys())[-1] if isinstance(node, CommentedMap)
                                 else len(node) - 1)
            node = parent[key]
        self.parent, self.key = parent, key
        self.slot = 2 if isinstance(parent, CommentedMap) else 0
        entry = parent.ca.items.get(key)
        token = entry[self.slot] if entry and len(entry) > self.slot else None
        self.had = token is not None
        text = token.value if token is not None else "\n"
        cut = text.find("\n")
        self.eol, self.rest = (text, "") if cut < 0 else (text[: cut + 1], text[cut + 1:])

    def set(self, rest: str) -> None:
        if not self.had and not rest:
            return
        entry = self.parent.ca.items.setdefault(
            self.key, [None, None, None, None] if self.slot == 2 else [None, None])
        entry[self.slot] = CommentToken(self.eol + rest, CommentMark(0), None)


def _place_env_last(tree: CommentedMap) -> None:
    """Move `env` (or make room for it) at the end, carrying the comment lines above it."""
    keys = list(tree.keys())
    if "env" not in keys:
        if keys:
            last = _Tail(tree, keys[-1])
            if not last.rest.endswith("\n"):
                last.set(last.rest + "\n")  # a blank line above the new env
        return
    i = keys.index("env")
    if i == len(keys) - 1:
        return
    env = _Tail(tree, "env")
    last = _Tail(tree, keys[-1])
    above_env = ""
    if i > 0:
        prev = _Tail(tree, keys[i - 1])
        above_env = prev.rest
        prev.set(env.rest)  # the lines above the key after env stay above it
    last.set(last.rest + (above_env or "\n"))
    env.set("")


def _missing_descriptions(doc: Loaded, descriptions: dict[str, ServiceDescription]) -> None:
    mesh: Mesh = doc.model
    problems = [
        doc.positions.problem(f"no service description for image {s.image}",
                              ("services", i, "image"), value=s.image,
                              allowed="an image built or recorded by "
                              "`veil apply -f <service.yaml> --dry-run`")
        for i, s in enumerate(mesh.services) if s.image not in descriptions
    ]
    if problems:
        raise ManifestError(problems, summary=f"cannot list the defaults of {doc.file}")


def print_defaults(text: str, file: str, descriptions: dict[str, ServiceDescription]) -> str:
    """The mesh `text` with every declared variable listed in `env` (see module docstring)."""
    doc = load_mesh(file, text)
    _missing_descriptions(doc, descriptions)
    mesh: Mesh = doc.model
    entries = mesh_entries(doc)
    shared = {e.name for e in entries if e.target in ("global", "helm")}
    per_service = {(e.target, e.name) for e in entries}
    per_service_set = {(e.target, e.name) for e in entries if e.value is not None}

    tree: CommentedMap = doc.tree
    _place_env_last(tree)  # first: it reads the comments at the end of the input's own nodes
    env = _grouped_env(tree.get("env"))
    globals_ = next((g for g in env if isinstance(g, dict) and g.get("service") == "global"),
                    None)
    new_global = globals_ is None
    if globals_ is None:
        globals_ = _group("global")
    if globals_.get("env") is None:
        globals_["env"] = CommentedSeq()

    for var in declared_variables(mesh, descriptions):
        if var.uniform:
            if var.name in shared or all((s, var.name) in per_service_set
                                         for s in var.services):
                continue
            note = ["declared by: " + ", ".join(var.services)]
            globals_["env"].append(_entry(var.name, var.defaults[0][1], note))
            continue
        if var.name in shared and any(v is not None for e in entries
                                      if e.target in ("global", "helm") and e.name == var.name
                                      for v in [e.value]):
            continue  # the user's own global value decides
        for service, default in var.defaults:
            if (service, var.name) in per_service:
                continue
            group = next((g for g in reversed(env)
                          if isinstance(g, dict) and g.get("service") == service), None)
            if group is None:
                group = _group(service)
                env.append(group)
            if group.get("env") is None:
                group["env"] = CommentedSeq()
            group["env"].append(_entry(var.name, default, [f"default of {service}; {DIFFERS}"]))

    if new_global and globals_["env"]:
        env.insert(0, globals_)
    if "env" in tree:
        del tree["env"]
    tree["env"] = env
    buf = io.StringIO()
    _yaml().dump(tree, buf)
    return buf.getvalue()
