"""`veil base create python`: the command the test fixture's base image comes from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.image.support import need
from veil.cli import main

pytestmark = [pytest.mark.integration]


def test_base_create_pushes_a_python_image_with_its_interpreter_label(
    registry: str, base_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    need("buildah", "skopeo")
    ref = f"{registry}/veil/python-cli:bookworm"
    cache = os.environ.get("VEIL_TEST_CACHE", "/var/tmp/veil-test-cache")
    rc = main(["base", "create", "python", "--to", ref, "--cache", cache])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.strip().startswith(f"{ref}@sha256:")
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    interp = json.loads(json.loads(proc.stdout)["Labels"]["dev.veil.interpreter"])
    assert interp["paths"][0] == "/usr/bin/python3"
    assert interp["paths"][-1].startswith("/usr/bin/python3.")


def test_unknown_base_kind_is_a_user_error(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    rc = main(["base", "create", "ruby", "--to", "127.0.0.1:5000/x/y:1"])
    assert rc == 2
    assert "unknown base kind 'ruby'" in capsys.readouterr().err


def test_inspect_of_an_image_without_description(registry: str, base_image: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["inspect", base_image])
    err = capsys.readouterr().err
    assert rc == 2
    assert "carries no service description" in err and "veil apply" in err
