"""The launcher's `main`: what it execs, with which environment, and that every refusal ends
the start with exit status 1 before anything is executed.

`main` works on `/`; here the image root of `image_root.py` stands in for it (the pieces that
take a root are given the test root) and `os.execve`/`os.chdir` only record what they were
asked, so the test process goes on. CAS is the test double of test_launcher.py.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.image_root import make_image_root
from tests.runtime.test_launcher import FakeCas, env_for
from veil.runtime import launcher
from veil.runtime.launcher import BASE_ENV
from veil.runtime.measure import measure

TOKEN = b"t0ken-from-cas"


@dataclass
class Launch:
    root: Path
    cas: FakeCas
    execs: list[tuple[str, list[str], dict[str, str]]] = field(default_factory=list)
    chdirs: list[str] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)


@pytest.fixture
def launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Launch]:
    root, m = make_image_root(tmp_path)
    cas = FakeCas(tmp_path, m)
    cas.answer = {
        "env": {"API_USER": "me"}, "argv": ["python3", "main.py"], "pwd": "/app",
        "files": [{"path": "/run/app/token", "content": base64.b64encode(TOKEN).decode(),
                   "mode": "0640"}],
    }
    state = Launch(root, cas)
    real = {name: getattr(launcher, name)
            for name in ("provision", "read_plan", "resolve_program", "write_files")}

    def provision(environ: Any, where: str = "/", platform: str | None = None) -> Any:
        # main hands over the container's environment and `/`; the guard would refuse this
        # test process's PYTHON* variables, so the test image gets a clean one
        assert environ is os.environ and where == "/" and platform is None
        return real["provision"](env_for(cas), str(root))

    def read_plan(where: str = "/") -> Any:  # provision's own call gets the test root
        return real["read_plan"](str(root) if where == "/" else where)

    def measure_image(where: str = "/", plan: Any = None) -> str:
        state.measured.append(where)
        return measure(str(root), real["read_plan"](str(root)))

    monkeypatch.setattr(launcher, "provision", provision)
    monkeypatch.setattr(launcher, "read_plan", read_plan)
    monkeypatch.setattr(launcher, "measure_image", measure_image)
    monkeypatch.setattr(launcher, "resolve_program",
                        lambda argv0, env, plan: real["resolve_program"](argv0, env, plan,
                                                                         str(root)))
    monkeypatch.setattr(launcher, "write_files",
                        lambda files, plan: real["write_files"](files, plan, str(root)))
    monkeypatch.setattr(os, "execve", lambda path, argv, env: state.execs.append(
        (path, list(argv), dict(env))))
    monkeypatch.setattr(os, "chdir", state.chdirs.append)
    # what `podman run -e` would add: never passed on to the program
    monkeypatch.setenv("INJECTED_BY_THE_HOST", "x")
    try:
        yield state
    finally:
        cas.close()


def refused(launch: Launch, capsys: pytest.CaptureFixture[str], argv: list[str] | None) -> str:
    """main's refusal: exit status 1, one `veil-launcher: ` line, nothing executed."""
    with pytest.raises(SystemExit) as exc:
        launcher.main(argv)
    assert exc.value.code == 1
    assert launch.execs == []
    err = capsys.readouterr().err
    assert err.startswith("veil-launcher: ") and err.count("\n") == 1
    return err


def test_the_program_gets_only_the_provisioned_environment(
    launch: Launch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launcher.main([]) is None  # os.execve does not return; here it only recorded
    assert launch.execs == [("/usr/bin/python3", ["python3", "main.py"],
                             {**BASE_ENV, "API_USER": "me"})]
    assert launch.chdirs == ["/app"]
    token = launch.root / "run/app/token"
    assert token.read_bytes() == TOKEN and token.stat().st_mode & 0o7777 == 0o640
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("veil-launcher attested ns/s/svc (simulation)")
    assert launch.cas.requests == 2 and launch.measured == []


def test_no_working_directory_is_no_chdir(launch: Launch) -> None:
    launch.cas.answer = {**launch.cas.answer, "pwd": None}
    launcher.main([])
    assert launch.chdirs == [] and len(launch.execs) == 1


def test_print_measurement_measures_the_root_and_starts_nothing(
    launch: Launch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launcher.main(["--print-measurement"]) == 0
    assert capsys.readouterr().out == launch.cas.expected + "\n"
    assert launch.measured == ["/"] and launch.cas.requests == 0 and launch.execs == []


@pytest.mark.parametrize("argv", [["sh"], ["--print-measurement", "x"], ["python3", "main.py"]])
def test_container_arguments_are_refused_before_cas_is_asked(
    launch: Launch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    err = refused(launch, capsys, argv)
    assert "container arguments are not accepted" in err
    assert launch.cas.requests == 0 and launch.measured == []


def test_no_command_from_cas_is_a_refusal(launch: Launch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    launch.cas.answer = {**launch.cas.answer, "argv": []}
    assert "CAS sent no command to run" in refused(launch, capsys, [])


def test_a_refused_injection_file_starts_nothing(launch: Launch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    launch.cas.answer = {**launch.cas.answer, "files": [
        {"path": "/app/main.py", "content": "eA==", "mode": "0644"}]}
    assert "/app/main.py, which this image measures" in refused(launch, capsys, [])
    assert (launch.root / "app/main.py").read_text() == "print('hi')\n"


def test_a_working_directory_that_cannot_be_entered_is_a_refusal(
    launch: Launch, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def chdir(path: str) -> None:
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(os, "chdir", chdir)
    err = refused(launch, capsys, [])
    assert err.startswith("veil-launcher: cannot prepare the program: [Errno 2]")


def test_a_program_that_cannot_be_executed_is_a_refusal(
    launch: Launch, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "execve", execve)
    with pytest.raises(SystemExit) as exc:
        launcher.main([])
    assert exc.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("veil-launcher attested ")
    assert err[1].startswith("veil-launcher: cannot start 'python3': [Errno 13]")


def test_without_an_argument_list_main_reads_the_processes_own(
    launch: Launch, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/veil-launcher"])
    launcher.main()
    assert len(launch.execs) == 1
    launch.execs.clear()
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/veil-launcher", "sh"])
    assert "container arguments are not accepted" in refused(launch, capsys, None)
