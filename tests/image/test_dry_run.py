"""`veil apply -f service.yaml --dry-run` needs no container engine, registry or network.

What only the base image can tell (its digest, its Python, the measurement) is left empty and
said to be taken at build time; everything else is recorded as a build would record it.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from veil.cli import main
from veil.image.index import IndexEntry, LocalIndex

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello-user"
IMAGE = "127.0.0.1:5000/veil/python_hello_user:latest"


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No buildah/podman on PATH, no program may be started, no connection opened."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a dry run started a program or connected: {args!r}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.chdir(tmp_path)


def test_dry_run_without_buildah_records_the_description(
    no_engine: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["apply", "-f", str(HELLO / "service.yaml"), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "taken at build time" in out
    entry = LocalIndex().get(IMAGE)
    assert entry is not None and entry.digest is None
    d = entry.description
    assert d.measurement is None and d.base_digest is None
    assert [g.name for g in d.global_env] == ["API_USER"]
    assert [s.name for s in d.secrets] == ["password"]
    ctx = tmp_path / "target" / "python_hello_user"
    written = json.loads((ctx / "description.json").read_text())
    assert written["measurement"] is None and written["name"] == "python_hello_user"
    containerfile = (ctx / "Containerfile").read_text()
    assert "not for building" in containerfile
    assert (ctx / "rootfs" / "python" / "print_env.py").is_file()


def test_dry_run_keeps_the_entry_of_a_built_image(
    no_engine: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "-f", str(HELLO / "service.yaml"), "--dry-run"]) == 0
    index = LocalIndex()
    recorded = index.get(IMAGE)
    assert recorded is not None
    built = recorded.description.model_copy(update={"measurement": "ab" * 32})
    index.put(IndexEntry(image=IMAGE, description=built, digest="sha256:" + "cd" * 32,
                         source=recorded.source))
    assert main(["apply", "-f", str(HELLO / "service.yaml"), "--dry-run"]) == 0
    kept = index.get(IMAGE)
    assert kept is not None and kept.description.measurement == "ab" * 32
    assert kept.digest == "sha256:" + "cd" * 32


def test_dry_run_of_a_changed_manifest_replaces_the_built_entry(
    no_engine: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "print_env.py").write_text((HELLO / "print_env.py").read_text())
    manifest = src / "service.yaml"
    manifest.write_text((HELLO / "service.yaml").read_text())
    assert main(["apply", "-f", str(manifest), "--dry-run"]) == 0
    index = LocalIndex()
    first = index.get(IMAGE)
    assert first is not None
    index.put(IndexEntry(image=IMAGE, digest="sha256:" + "cd" * 32, source=first.source,
                         description=first.description.model_copy(
                             update={"measurement": "ab" * 32})))
    manifest.write_text(manifest.read_text().replace("python3 print_env.py",
                                                     "python3 -u print_env.py"))
    assert main(["apply", "-f", str(manifest), "--dry-run"]) == 0
    now = index.get(IMAGE)
    assert now is not None and now.digest is None and now.description.measurement is None
    assert now.description.command == "python3 -u print_env.py"
