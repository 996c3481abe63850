"""Usage errors and help texts: a clear message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.cli import main
from veil.cli.apply import release_name


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize(("args", "expected"), [
    (["apply", "-f", "x.yaml", "--bogus"], "No such option: --bogus"),
    (["apply", "--dry-run"], "Missing option '-f'"),
    (["apply", "-f", "x.yaml", "--mode", "fast"], "'fast' is not one of 'debug', 'production'"),
    (["apply", "-f", "x.yaml", "--output", "json"], "'json' is not one of"),
    (["apply", "-f", "x.yaml", "-t"], "Option '-t' requires an argument"),
    (["schema"], "Missing argument 'KIND'"),
    (["schema", "pod"], "'pod' is not one of 'genservice', 'mesh'"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["env", "explain", "svc"], "Missing option '-f'"),
])
def test_usage_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, text = run(capsys, *args)
    assert code == 2, text
    assert expected in text
    assert "Traceback" not in text


@pytest.mark.parametrize("args", [
    ["--help"], ["apply", "--help"], ["schema", "--help"], ["env", "explain", "--help"],
    ["wrap", "flask", "--help"], ["base", "create", "--help"], ["inspect", "--help"],
])
def test_help_shows_no_python_type_names(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, text = run(capsys, *args)
    assert code == 0
    for python_type in ("<bool>", "<int>", "<str>", "<path>"):
        assert python_type not in text, f"{python_type} in help of {args}"


def test_help_metavars_read_like_a_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "apply", "--help")
    assert code == 0
    assert "PATH" in text
    assert "[debug|production]" in text
    lines = [ln for ln in text.splitlines() if "--dry-run" in ln]
    assert lines and "BOOL" not in lines[0].upper().replace("--DRY-RUN", "")


def test_verbose_is_a_counting_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "--help")
    assert code == 0
    line = next(ln for ln in text.splitlines() if "--verbose" in ln)
    assert "INTEGER" not in line and "default: 0" not in line
    assert "-vv" in line


def test_verify_says_the_reference_is_wrong_before_asking_for_a_key(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(capsys, "verify", "UPPER/x")
    assert code == 2
    assert "registry is missing" in text and "signing key" not in text


def test_help_of_env_explain_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "env", "--help")
    assert code == 0
    # the docstring's own line break used to end a help line after "whether the"
    assert [ln for ln in text.splitlines() if ln.rstrip(" │").endswith("whether the")] == []


def test_output_file_that_is_a_folder_or_below_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, text = run(capsys, "schema", "mesh", "-o", str(tmp_path))
    assert code == 2 and "is a folder" in text and "Traceback" not in text
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, text = run(capsys, "schema", "mesh", "-o", str(blocker / "schema.json"))
    assert code == 2 and "is a file, not a folder" in text
    assert blocker.read_text() == "x"


def test_output_the_file_system_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "schema", "mesh", "-o", "/proc/veil-schema.json")
    assert code == 1
    assert "cannot write /proc/veil-schema.json" in text and "Traceback" not in text


def test_release_name_helm_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "apply", "-f", "mesh.yaml", "--release", "My_Release")
    assert code == 2 and "not a Helm release name" in text


@pytest.mark.parametrize(("namespace", "release"), [
    ("myUniqueNamespace", "myuniquenamespace"), ("my_ns-1.x", "my-ns-1.x"), ("__", "veil"),
    ("x" * 80, "x" * 53),
])
def test_default_release_is_a_helm_release_name(namespace: str, release: str) -> None:
    assert release_name(namespace) == release
