"""`veil apply`, `veil env explain`, `veil schema`: exit codes and exact output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import free_port
from veil.cli import main
from veil.image.index import LocalIndex

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello-user"
SEEDS = ROOT / "examples" / "seeds"

MESH = """\
apiVersion: scone/5.8
kind: mesh
cas:
  - name: cas
    alias: ["image", "security", "access", "attestation"]
    cas_url: cas.example:8081
policy:
  namespace: hello
services:
  - name: pythonapp
    image: 127.0.0.1:5000/veil/python_hello_user:latest
env:
  - name: API_USER
    value: myself
  - name: API_TOKEN
    value: s3cr3t-literal
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # build contexts of dry runs land in ./target


@pytest.fixture
def hello_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "apply", "-f", str(HELLO / "service.yaml"), "--dry-run")
    assert code == 0


def test_service_dry_run_records_description(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "apply", "-f", str(HELLO / "service.yaml"), "--dry-run")
    assert code == 0
    assert "python_hello_user" in out
    entry = LocalIndex().get("127.0.0.1:5000/veil/python_hello_user:latest")
    assert entry is not None and entry.source == str(HELLO / "service.yaml")
    assert [g.name for g in entry.description.global_env] == ["API_USER"]


def test_mesh_dry_run_prints_plan_with_secrets_masked(
        hello_recorded: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    code, out, err = run(capsys, "apply", "-f", str(mesh), "--dry-run", "--mode", "debug",
                         "-t", str(tmp_path / "t"))
    assert code == 0, out
    assert "  session hello/pythonapp  (service pythonapp, 4 variables" in out
    assert "mode debug" in out
    assert "s3cr3t-literal" not in out and "********" in out
    assert "$$SCONE::password$$" in out  # a reference is shown, it is no secret
    assert str(tmp_path / "t" / "policies") in out and str(tmp_path / "t" / "helm") in out
    assert "could not compare with CAS" in out and err == ""
    written = (tmp_path / "t" / "policies" / "pythonapp.json").read_text()
    assert "s3cr3t-literal" not in written and "$$SCONE::password$$" in written


def test_mesh_apply_without_a_known_cas_key_sends_nothing(
        hello_recorded: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = LocalIndex()  # as if built: a dry run records no measurement, and apply wants one
    entry = index.get("127.0.0.1:5000/veil/python_hello_user:latest")
    assert entry is not None
    index.put(replace(entry, description=entry.description.model_copy(
        update={"measurement": "ab" * 32})))
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    code, _, err = run(capsys, "apply", "-f", str(mesh))
    assert code == 2 and "no key is known for the CAS at cas.example:8081" in err
    assert "veil cas trust cas.example:8081 KEY" in err


def test_unknown_image_lists_every_one_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = tmp_path / "mesh.yaml"
    # a port where no registry listens: a registry on :5000 (a demo) may hold the hello image
    nowhere = f"127.0.0.1:{free_port()}"
    mesh.write_text(MESH.replace("127.0.0.1:5000", nowhere).replace(
        "services:\n", "services:\n  - name: other\n    image: reg.example/other:2\n"))
    code, _, err = run(capsys, "apply", "-f", str(mesh), "--dry-run")
    assert code == 2
    assert "reg.example/other:2" in err and f"{nowhere}/veil/python_hello_user" in err
    assert "veil apply -f <service.yaml> --dry-run" in err


def test_exact_error_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(
        MESH.replace("scone/5.8", "scone/4.0").replace("namespace: hello", "namespace: $NS"))
    code, out, err = run(capsys, "apply", "-f", "bad.yaml", "--dry-run")
    assert code == 2 and out == ""
    assert err == (
        "error: 2 errors in bad.yaml\n"
        "  bad.yaml:1:13: error at apiVersion: apiVersion 'scone/4.0' is not supported "
        "(got 'scone/4.0'); allowed: scone/X.Y[.Z] with X.Y >= 5.8, e.g. scone/5.8\n"
        "  bad.yaml:8:14: error at policy.namespace: unexpanded shell variable $NS; did you "
        "run envsubst? (`envsubst < mesh.yaml.template > mesh.yaml`) (got '$NS'); "
        "allowed: a concrete value without $VAR\n")


def test_exact_yaml_syntax_error_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("broken.yaml").write_text("apiVersion: scone/5.8\nkind: mesh\ncas: [\n")
    code, _, err = run(capsys, "apply", "-f", "broken.yaml")
    assert code == 2
    assert err == ("error: broken.yaml is not valid YAML\n"
                   "  broken.yaml:4:1: error: invalid YAML: while parsing a flow node "
                   "expected the node content, but found '<stream end>'\n")


def test_print_defaults_stdout_and_file(hello_recorded: None, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    mesh1 = tmp_path / "mesh-1.yaml"
    mesh1.write_text(MESH.split("env:")[0])
    code, out, _ = run(capsys, "apply", "-f", str(mesh1), "--print-defaults")
    assert code == 0 and out.endswith("  - name: API_USER  # declared by: pythonapp\n"
                                      "    value: null # required: no default\n")
    code, _, _ = run(capsys, "apply", "-f", str(mesh1), "--print-defaults",
                     "--file", str(tmp_path / "mesh-2.yaml"))
    assert code == 0 and (tmp_path / "mesh-2.yaml").read_text() == out


def test_print_defaults_of_a_service_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    """sconectl's `-p` on a service: its variables, which have a default, which must be set."""
    code, out, err = run(capsys, "apply", "-f", str(HELLO / "service.yaml"), "-p")
    assert code == 0, err
    assert out.splitlines()[1:] == [
        "env:", "  - service: global", "    env:", "      - name: API_USER",
        "        value: null  # required: no default",
        "# fixed by the service (local), not settable by a mesh: SCONE_HEAP, SCONE_LOG, "
        "API_PASSWORD"]


def test_env_explain(hello_recorded: None, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    code, out, _ = run(capsys, "env", "explain", "-f", str(mesh), "pythonapp")
    assert code == 0
    assert "API_USER" in out and "myself" in out and "(mesh global)" in out
    assert "s3cr3t-literal" not in out
    code, _, err = run(capsys, "env", "explain", "-f", str(mesh), "nosuch")
    assert code == 2 and "pythonapp" in err


def test_seed_mesh_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    for f in [SEEDS / "genservice.yaml", *sorted((SEEDS / "services").glob("*.yaml"))]:
        assert run(capsys, "apply", "-f", str(f), "--dry-run")[0] == 0
    code, out, _ = run(capsys, "apply", "-f", str(SEEDS / "mesh.yaml"), "--dry-run")
    assert code == 0
    for s in ("memcached", "nginx_scone", "maria_db"):
        assert f"  session myUniqueNamespace/{s}  (service {s}, " in out


@pytest.mark.parametrize("kind,field", [("genservice", "build"), ("mesh", "services")])
def test_schema(kind: str, field: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema", kind)
    assert code == 0
    doc = json.loads(out)
    assert field in doc["properties"] and "apiVersion" in doc["required"]


@pytest.mark.parametrize("args", [["--help"], ["apply", "--help"], ["env", "explain", "--help"],
                                  ["schema", "--help"], ["env", "--help"]])
def test_help_everywhere(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *args)
    assert code == 0 and "Usage" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("veil ")


def test_real_command_exit_code_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: scone/5.8\nkind: nonsense\n")
    p = subprocess.run([sys.executable, "-m", "veil", "apply", "-f", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "unknown kind" in p.stderr


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (gettext-base) missing")
def test_hello_user_workflow_script(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "VEIL_HOME": str(tmp_path / "home"), "WORK": str(work),
           "APP_NAMESPACE": "hello-test", "HOME": str(tmp_path), "DRY_RUN": "1",
           "CAS_ADDR": "127.0.0.1:1"}
    p = subprocess.run(["bash", str(HELLO / "run.sh")], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    mesh3 = (work / "mesh-3.yaml").read_text()
    assert mesh3.startswith((work / "mesh-2.yaml").read_text())
    assert "hello-test/pythonapp" in p.stdout and "myself" in p.stdout
    assert (work / "target" / "helm" / "charts" / "pythonapp" / "values.yaml").exists()
    assert "helm install hello-test " in p.stdout
    rendered = work / "target" / "manifests" / "pythonapp" / "deployment.yaml"
    assert "SCONE_CONFIG_ID" in rendered.read_text()


def test_diff_without_a_reachable_cas_is_an_operational_error(
        hello_recorded: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH.replace("cas.example:8081", "127.0.0.1:1"))
    code, _, err = run(capsys, "apply", "-f", str(mesh), "--diff", "-t", str(tmp_path / "t"))
    assert code == 1 and "--diff could not compare with CAS" in err
    assert not (tmp_path / "t").exists()  # --diff writes nothing
