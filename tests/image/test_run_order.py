"""sconectl's `run:` after `copy:`: a step that moves a copied file builds, and the image's
measurement is the one its launcher computes at start (the step's effect is measured). The steps
run in a build stage on the build base; only the program folder carries over."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.image.support import hello_service, need
from veil.cli import main

pytestmark = [pytest.mark.integration]


def test_run_step_sees_the_copied_files(registry: str, base_image: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    need("buildah", "podman")
    manifest = hello_service(tmp_path, registry, base_image, name="runorder",
                             extra="  run:\n    - mv /python/print_env.py /python/hello.py"
                             " && echo x > /python/made.txt && echo x > /etc/from-step\n")
    manifest.write_text(manifest.read_text().replace("command: python3 print_env.py",
                                                     "command: python3 hello.py"))
    monkeypatch.chdir(tmp_path)
    rc = main(["apply", "-f", str(manifest)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    desc = json.loads((tmp_path / "target" / "runorder" / "description.json").read_text())
    image = f"{registry}/test/runorder:1"
    # the steps ran in the build base (a shell); the image holds their program folder on the
    # runtime base (no shell: listed by its Python)
    assert desc["base_image"] == f"{base_image}-runtime"
    listing = subprocess.run(["podman", "run", "--rm", "--tls-verify=false", "--entrypoint",
                              "/usr/bin/python3", image, "-c",
                              "import os; print(*sorted(os.listdir('/python')), "
                              "os.path.exists('/bin/sh'), os.path.exists('/etc/from-step'))"],
                             capture_output=True, text=True, timeout=120, check=False)
    # the program folder as the steps left it carries over; what they wrote elsewhere does not
    assert listing.stdout.split() == ["hello.py", "made.txt", "False", "False"], listing.stderr
    started = subprocess.run(["podman", "run", "--rm", "--init", "--tls-verify=false", image,
                              "--print-measurement"], capture_output=True, text=True,
                             timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == desc["measurement"]
