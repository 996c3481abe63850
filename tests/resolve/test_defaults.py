"""The seeds' --print-defaults workflow: emit, append a patch, apply — the patch's values win."""

from __future__ import annotations

import pytest

from tests.resolve.helpers import MESH_HEAD, description, index
from veil.errors import ManifestError
from veil.manifest.load import load_mesh
from veil.resolve.defaults import print_defaults
from veil.resolve.env import resolve_mesh

MESH_1 = MESH_HEAD + """\
services:
  - name: a
    image: reg.example/a:1
  - name: b
    image: reg.example/b:1
"""

DESCS = index(
    description("a", global_={"USER": None, "LEVEL": "info", "PORT": "80"}),
    description("b", global_={"LEVEL": "debug", "PORT": "80"}, local={"FIXED": "1"}),
)


def test_emitted_mesh_lists_every_variable_and_requires_the_missing() -> None:
    mesh2 = print_defaults(MESH_1, "mesh-1.yaml", DESCS)
    assert mesh2.rstrip().splitlines()[-1].strip().startswith("value:")
    assert list(load_mesh("mesh-2.yaml", mesh2).tree)[-1] == "env"
    with pytest.raises(ManifestError) as info:
        resolve_mesh(load_mesh("mesh-2.yaml", mesh2), DESCS)
    [p] = info.value.problems
    assert "`a`" in p.message and "USER" in p.message


def test_appended_patch_wins() -> None:
    mesh2 = print_defaults(MESH_1, "mesh-1.yaml", DESCS)
    patch = ("- service: global\n  env:\n    - name: USER\n      value: me\n"
             "    - name: PORT\n      value: 8080\n    - name: LEVEL\n      value: warn\n"
             "- service: b\n  env:\n    - name: LEVEL\n      value: error\n")
    r = resolve_mesh(load_mesh("mesh-3.yaml", mesh2 + patch), DESCS)
    a, b = r.services["a"].program_env, r.services["b"].program_env
    assert a["USER"].value == "me" and a["PORT"].value == "8080" and b["PORT"].value == "8080"
    # defaults that differ were emitted per service: a global patch entry does not override them
    assert a["LEVEL"].value == "info"
    assert b["LEVEL"].value == "error"
    assert b["LEVEL"].origin.file == "mesh-3.yaml"


def test_fixpoint_and_patch_survive_a_second_round() -> None:
    mesh2 = print_defaults(MESH_1, "mesh-1.yaml", DESCS)
    assert print_defaults(mesh2, "mesh-2.yaml", DESCS) == mesh2
    mesh3 = mesh2 + "- service: global\n  env:\n    - name: USER\n      value: me\n"
    again = print_defaults(mesh3, "mesh-3.yaml", DESCS)
    assert again.count("name: USER") == 2 and again.count("name: PORT") == 1
    assert print_defaults(again, "x.yaml", DESCS) == again


def test_missing_description_is_reported() -> None:
    with pytest.raises(ManifestError) as info:
        print_defaults(MESH_1, "mesh-1.yaml", index(description("a")))
    [p] = info.value.problems
    assert p.path == "services[1].image"
