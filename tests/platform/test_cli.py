"""`veil platform serve` refusals: exit codes, reasons, and no password echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def test_a_bad_listen_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, "platform", "serve", "--listen", "127.0.0.1:http")
    assert code == 2 and "the port is not a number" in text


def test_an_unreachable_database_says_so_without_the_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, text = run(capsys, "platform", "serve", "--state-dir", str(tmp_path), "--listen",
                     "127.0.0.1:1", "--db", "postgresql+psycopg2://veil:hunter2@127.0.0.1:1/x")
    assert code == 1
    assert "cannot open the platform's job store" in text and "Traceback" not in text
    assert "hunter2" not in text


def test_an_unknown_database_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, text = run(capsys, "platform", "serve", "--state-dir", str(tmp_path), "--listen",
                     "127.0.0.1:1", "--db", "oracle9://x")
    assert code == 2 and "use sqlite:///PATH or postgresql://" in text
