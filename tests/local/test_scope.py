"""Which mesh `veil ps`, `veil logs` and `veil down` act on without `-f`: as docker compose
picks the project of the current directory — the last `veil up` run here, else `./mesh.yaml`;
`--all` for every mesh; nothing here is an error, never "every mesh" by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.cli import main
from veil.cli._local import mesh_of
from veil.errors import UserError
from veil.local.state import last_up, record_up

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: cas.example:8081
policy:
  namespace: {ns}
services:
  - name: api
    image: reg.example/api:1
"""


def test_nothing_here_is_an_error_naming_f_and_all(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        mesh_of(None)
    assert "no mesh here" in err.value.message
    assert "-f FILE" in str(err.value.hint) and "--all" in str(err.value.hint)
    assert mesh_of(None, required=False) is None  # `veil logs`: then any mesh
    assert mesh_of(None, True) is None  # --all


def test_the_default_file_of_this_directory(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mesh.yaml").write_text(MESH.format(ns="Shop_1"))
    assert mesh_of(None) == "shop-1"


def test_the_last_up_here_wins_over_the_default_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "mesh.yaml").write_text(MESH.format(ns="default"))
    (tmp_path / "a" / "other.yaml").write_text(MESH.format(ns="other"))
    monkeypatch.chdir(tmp_path / "a")
    record_up(Path("other.yaml"), "other")
    assert mesh_of(None) == "other"
    here = last_up()
    assert here is not None and here.file == str(tmp_path / "a" / "other.yaml")
    monkeypatch.chdir(tmp_path / "b")  # another directory: not that mesh
    assert last_up() is None
    with pytest.raises(UserError):
        mesh_of(None)
    assert mesh_of(tmp_path / "a" / "mesh.yaml") == "default"


def test_f_and_all_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH.format(ns="x"))
    with pytest.raises(UserError, match="-f names one mesh and --all every mesh"):
        mesh_of(tmp_path / "mesh.yaml", True)


@pytest.mark.parametrize("command", ["ps", "down"])
def test_the_commands_refuse_to_guess(command: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("veil.local.podman.PodmanRunner.check", lambda self: None)
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "no mesh here" in err and "--all" in err
