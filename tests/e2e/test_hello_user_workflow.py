"""End to end: `examples/hello-user/run.sh` for real — build, envsubst, mesh-1, --print-defaults,
mesh-2, patch, mesh-3, apply (sessions in a real CAS, chart written and rendered by Helm's
engine) — and the image, started as the rendered Deployment says, attests and gets its values.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.e2e.conftest import Cas
from tests.image.support import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_run_sh_applies_the_seed_workflow(registry: str, base_image: str, cas: Cas,
                                          tmp_path: Path) -> None:
    need("buildah", "podman", "envsubst")
    pytest.importorskip("helm_python")
    assert base_image.startswith(f"{registry}/veil/")  # the base the example builds on
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "veil").write_text(f'#!/bin/sh\nexec {sys.executable} -m veil "$@"\n')
    (bin_dir / "veil").chmod(0o755)
    namespace = "hello-" + uuid.uuid4().hex[:8]
    env = dict(os.environ, VEIL_HOME=str(tmp_path / "home"),
               VEIL_CONFIG_DIR=str(tmp_path / "config"), VEIL=str(bin_dir / "veil"),
               APP_IMAGE_REPO=f"{registry}/veil", CAS_ADDR=cas.addr,
               APP_NAMESPACE=namespace, WORK=str(tmp_path / "work"))
    trust = subprocess.run([str(bin_dir / "veil"), "cas", "trust", cas.addr, cas.key],
                           env=env, capture_output=True, text=True, timeout=120)
    assert trust.returncode == 0, trust.stderr
    p = subprocess.run(["bash", str(ROOT / "examples/hello-user/run.sh"), "--debug"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"helm install {namespace} " in p.stdout
    work = tmp_path / "work"
    rendered = (work / "target/manifests/pythonapp/deployment.yaml").read_text()
    deployment = next(d for d in YAML(typ="safe").load_all(rendered) if d)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env_of = {e["name"]: e.get("value") for e in container["env"]}
    config_id = env_of["SCONE_CONFIG_ID"]
    assert config_id == f"{namespace}/pythonapp/pythonapp"
    assert "@sha256:" in container["image"]  # pinned by digest
    image = container["image"]
    run = subprocess.run(
        ["podman", "run", "--rm", "--init", "--tls-verify=false",
         "-e", f"SCONE_CONFIG_ID={config_id}", "-e", f"SCONE_CAS_ADDR={cas.addr}",
         "-e", f"SCONE_CAS_KEY={cas.key}", image],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Hello myself" in run.stdout  # API_USER from the patch, via CAS
    # applying the same mesh again (the same release: it is recorded in the sessions) changes
    # nothing in CAS
    again = subprocess.run(
        [str(bin_dir / "veil"), "apply", "-f", str(work / "mesh-3.yaml"), "--mode", "debug",
         "--release", namespace, "--diff"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and "updated" not in again.stdout
