"""sconectl's command line, as its users' scripts write it: every flag accepted and acted on, or
refused with one line that says what Veil does instead. Exact output compared."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from veil import __version__
from veil.cli import main
from veil.cli._app import program_name, state
from veil.image.index import LocalIndex

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello-user"
IMAGE = "127.0.0.1:5000/veil/python_hello_user:latest"

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
"""


def run(capsys: pytest.CaptureFixture[str], *args: str,
        prog: str = "veil") -> tuple[int, str, str]:
    code = main(list(args), prog=prog)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sconectl work directory: the service's files, the manifest, run from there."""
    w = tmp_path / "work"
    w.mkdir()
    for f in ("service.yaml", "print_env.py"):
        shutil.copy(HELLO / f, w / f)
    (w / "mesh.yaml").write_text(MESH)
    monkeypatch.chdir(w)
    for var in ("SCONECTL_VERSION", "SCONECTL_REPO", "SCONECTL_NOPULL", "SCONECTL_CAS_CONFIG",
                "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    return w


@pytest.fixture
def recorded(work: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert run(capsys, "apply", "-f", "service.yaml", "-d")[0] == 0
    return work


# --- verbosity, quiet, version -------------------------------------------------------------

@pytest.mark.parametrize(("args", "level"), [
    (["apply", "-f", "service.yaml", "-p", "-vvvvvvvv"], 8),           # after the subcommand
    (["apply", "-vvvv", "-f", "service.yaml", "-p"], 4),                # before -f
    (["-vv", "apply", "-f", "service.yaml", "-p", "-v", "--verbose"], 4),  # both, repeated
    (["apply", "-f", "service.yaml", "-p"], 0),
])
def test_verbosity_anywhere_and_repeated(work: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], level: int) -> None:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert state.verbose == level
    assert "API_USER" in out


def test_verbose_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema", "mesh", "-vvv")
    assert code == 0 and state.verbose == 3 and json.loads(out)["title"]


@pytest.mark.parametrize("args", [["-q", "apply"], ["apply", "-q"], ["apply", "--quiet"]])
def test_quiet_anywhere(work: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    out_file = work / "defaults.yaml"
    code, out, err = run(capsys, *args, "-f", "service.yaml", "-p", "--file", str(out_file))
    assert code == 0 and state.quiet
    assert err == "" and out == ""  # not even "wrote defaults.yaml"
    assert "API_USER" in out_file.read_text()


@pytest.mark.parametrize(("prog", "flag", "expected"), [
    ("veil", "-V", f"veil {__version__}\n"),
    ("veil", "--version", f"veil {__version__}\n"),
    ("sconectl", "-V", f"sconectl {__version__} (veil {__version__})\n"),
])
def test_version(capsys: pytest.CaptureFixture[str], prog: str, flag: str,
                 expected: str) -> None:
    assert run(capsys, flag, prog=prog) == (0, expected, "")


def test_program_name_from_how_it_was_started() -> None:
    assert program_name("/usr/local/bin/sconectl") == "sconectl"
    assert program_name("veil") == "veil"
    assert program_name("/x/veil/__main__.py") == "veil"


@pytest.mark.skipif(shutil.which("sconectl") is None, reason="console script not installed")
def test_the_sconectl_console_script_names_itself(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "PYTHONPATH": str(ROOT / "src"), "HOME": str(tmp_path),
           "VEIL_HOME": str(tmp_path / "h")}
    p = subprocess.run(["sconectl", "apply", "--bogus"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 2
    assert "Usage: sconectl apply [OPTIONS]" in p.stderr
    assert "Try 'sconectl apply --help' for help." in p.stderr


# --- refusals: one line, exit 2, before anything is read ------------------------------------

@pytest.mark.parametrize(("flag", "expected"), [
    (["--maa", "https://sharedeus.eus.attest.azure.net"],
     "error: --maa https://sharedeus.eus.attest.azure.net: Veil does not use Microsoft Azure "
     "Attestation: its CAS verifies the evidence itself (SEV-SNP and TDX reports; simulation "
     "only in --mode debug)\n"),
    (["--otp"],
     "error: --otp: Veil has no one-time passwords: CAS accepts session updates only from the "
     "client key `sconectl cas init` made (the sessions' CREATOR)\n"),
    (["--signing-url", "https://sign.example"],
     "error: --signing-url https://sign.example: Veil has no signing service: sessions go over "
     "TLS to the CAS pinned by its key, from the client key `sconectl cas init` made\n"),
    (["--signing-online"],
     "error: --signing-online: Veil has no signing service: sessions go over TLS to the CAS "
     "pinned by its key, from the client key `sconectl cas init` made\n"),
    (["--signing-k8scontext", "prod"],
     "error: --signing-k8scontext prod: Veil has no signing service in Kubernetes: sessions "
     "go over TLS to the CAS pinned by its key, from the client key `sconectl cas init` "
     "made\n"),
])
def test_refused_flags_say_what_veil_does_instead(
        capsys: pytest.CaptureFixture[str], flag: list[str], expected: str) -> None:
    assert run(capsys, "apply", "-f", "mesh.yaml", *flag, prog="sconectl") == (2, "", expected)


def test_cas_config_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--cas-config", "/root/.cas", "apply", "-f", "m.yaml") == (
        2, "", "error: --cas-config /root/.cas: Veil does not read sconectl's CAS config "
        "directory; it pins each CAS by its key (cas_key in the mesh, or the key `veil cas "
        "init` recorded)\n")


def test_dash_h_alone_is_not_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "apply", "-h", prog="sconectl")
    assert code == 2 and out == ""
    assert err.endswith("Error: Option '-h' requires an argument.\n"
                        "(in `sconectl apply`, -h is --helm-template DIR, as in sconectl; help "
                        "is --help)\n")
    code, out, _ = run(capsys, "apply", "--help", prog="sconectl")
    assert code == 0 and "--helm-template" in out and "Usage: sconectl apply" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["-f", "service.yaml", "--release", "v1"],
     "error: --release applies to a mesh (kind: mesh); service.yaml is a service manifest "
     "(kind: genservice)\n"),
    (["-f", "service.yaml", "-o", "yaml"],
     "error: -o/--output applies to a mesh (kind: mesh); service.yaml is a service manifest "
     "(kind: genservice)\n"),
    (["-f", "mesh.yaml", "-h", "templates"],
     "error: -h/--helm-template applies to a service manifest (kind: genservice); mesh.yaml is "
     "a mesh\n"),
    (["-f", "mesh.yaml", "--no-push"],
     "error: --no-push applies to a service manifest (kind: genservice); mesh.yaml is a "
     "mesh\n"),
])
def test_a_flag_of_the_other_kind(work: Path, capsys: pytest.CaptureFixture[str],
                                  args: list[str], expected: str) -> None:
    assert run(capsys, "apply", *args) == (2, "", expected)


# --- service manifest -----------------------------------------------------------------------

def test_set_version_recorded_and_warned(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "apply", "-f", "service.yaml", "-d", "--set-version", "5.8.0",
                         "-t", "out")
    assert code == 0
    assert err == (f"warning: --set-version 5.8.0: Veil {__version__} has no SCONE 5.8.0 "
                   "images to select; the version is recorded with what this apply produces, "
                   "nothing else changes\n")
    assert "  version      5.8.0 (--set-version, recorded)\n" in out
    entry = LocalIndex().get(IMAGE)
    assert entry is not None and entry.description.version == "5.8.0"
    label = json.loads((work / "out" / "python_hello_user" / "description.json").read_text())
    assert label["version"] == "5.8.0"


def test_set_version_latest_and_from_sconectl_version(
        work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-d", "--set-version", "latest")
    assert code == 0 and err == ""
    monkeypatch.setenv("SCONECTL_VERSION", __version__)
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-d")
    assert code == 0 and err == ""
    entry = LocalIndex().get(IMAGE)
    assert entry is not None and entry.description.version == __version__


def test_sconectl_environment_is_said_at_v(
        work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCONECTL_REPO", "registry.scontain.com/cicd")
    monkeypatch.setenv("SCONECTL_NOPULL", "1")
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/config")
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-p")
    assert code == 0 and err == ""  # not a word without -v
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-p", "-v")
    assert "$SCONECTL_REPO is set and not used: Veil runs no CLI image" in err
    assert "$SCONECTL_NOPULL is set and not used" in err
    assert "$KUBECONFIG is set and not used: Veil writes charts" in err


def test_helm_template_is_carried_with_the_description(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    charts = work / "templates-genservice" / "charts"
    (charts / "templates").mkdir(parents=True)
    (charts / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (charts / "templates" / "deployment.yaml").write_text("kind: Deployment\n")
    code, out, err = run(capsys, "apply", "-f", "service.yaml", "-h", "templates-genservice",
                         "-vvvvvvvv", "--mode=debug", "-d")
    assert code == 0, err
    assert "helm template templates-genservice (2 files" in out
    entry = LocalIndex().get(IMAGE)
    assert entry is not None and entry.description.helm_template == {
        "charts/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n",
        "charts/templates/deployment.yaml": "kind: Deployment\n"}


def test_helm_template_missing_names_both_places(
        work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (work / "tpl").mkdir()
    (work / "tpl" / "Chart.yaml").write_text("x")
    monkeypatch.chdir(work.parent)
    code, _, err = run(capsys, "apply", "-f", "work/service.yaml", "-h", "tpl", "-d")
    assert code == 2
    assert err == (f"error: --helm-template tpl: no such folder in the current directory "
                   f"({work.parent}); work/tpl exists: sconectl resolves paths against the "
                   "current directory, so run from work or name it work/tpl\n")


def test_target_directory_and_dry_run_short(work: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "apply", "-f", "service.yaml", "-d", "--target-directory", "tgt")
    assert code == 0 and (work / "tgt" / "python_hello_user" / "Containerfile").is_file()
    assert "dry run: wrote the build context" in out


def test_print_defaults_of_a_service_with_a_default(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "service.yaml").write_text((work / "service.yaml").read_text().replace(
        "    - name: API_USER  # get value from Meshfile",
        "    - name: API_USER\n    - name: GREETING\n      value: 'hi: #1'"))
    code, out, _ = run(capsys, "apply", "-f", "service.yaml", "--print-defaults")
    assert code == 0
    assert ('      - name: GREETING\n        value: "hi: #1"  # default\n') in out
    assert "      - name: API_USER\n        value: null  # required: no default\n" in out


# --- mesh -----------------------------------------------------------------------------------

def test_mesh_flags_in_the_plan(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "apply", "-f", "mesh.yaml", "-d", "--release", "v1",
                         "--release-version", "7", "-o", "yaml", "--policy-namespace",
                         "other-ns", "--set-version", "latest", "--host-pwd", str(recorded),
                         "-vvvvvvv", "--mode=debug")
    assert code == 0, err
    assert "namespace other-ns" in out and "session other-ns/pythonapp" in out
    assert "wrote manifests to target/manifests/ (release v1, release version 7)" in out
    assert "recorded: --set-version latest" in out


def test_policy_namespace_must_be_usable(recorded: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "apply", "-f", "mesh.yaml", "-d", "--policy-namespace", "a/b") == (
        2, "", "error: --policy-namespace 'a/b' is not a usable CAS namespace\n"
        "  hint: letters, digits, _ . - (starting with a letter, digit or _)\n")


def test_host_pwd_elsewhere_is_a_warning(recorded: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "apply", "-f", "mesh.yaml", "-d", "--host-pwd", str(tmp_path))
    assert code == 0
    assert err == (f"warning: --host-pwd {tmp_path}: Veil runs on the host and resolves paths "
                   f"against the current directory ({recorded}), not against {tmp_path}\n")
    code, _, err = run(capsys, "apply", "-f", "mesh.yaml", "-d", "--host-pwd", "/nonexistent")
    assert (code, err) == (2, "error: --host-pwd /nonexistent: no such directory\n")


@pytest.mark.parametrize("flag", ["-n", "--no-pull"])
def test_no_pull_asks_no_registry(work: Path, capsys: pytest.CaptureFixture[str],
                                  flag: str) -> None:
    # nothing recorded: without --no-pull Veil would ask 127.0.0.1:5000 for the label
    code, _, err = run(capsys, "apply", "-f", "mesh.yaml", "-d", flag)
    assert code == 2
    assert "not in the local index, and from the registry: not asked (--no-pull)" in err


def test_hints_name_the_program_as_invoked(recorded: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    index = LocalIndex()  # as if built: a dry run records no measurement, and apply wants one
    entry = index.get(IMAGE)
    assert entry is not None
    index.put(replace(entry, description=entry.description.model_copy(
        update={"measurement": "ab" * 32})))
    code, _, err = run(capsys, "apply", "-f", "mesh.yaml", prog="sconectl")
    assert code == 2  # no CAS key known: nothing is sent
    assert "`sconectl cas trust cas.example:8081 KEY`" in err
    assert "`veil " not in err


@pytest.mark.integration
def test_n_on_a_service_builds_without_pushing(work: Path, registry: str, base_image: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = work / "service.yaml"
    to = f"{registry}/test/sconectl_no_push:{uuid.uuid4().hex[:8]}"
    manifest.write_text(manifest.read_text().replace(
        "  to: 127.0.0.1:5000/veil/python_hello_user:latest",
        f"  to: {to}\n  from: {base_image}"))
    code, out, err = run(capsys, "apply", "-f", "service.yaml", "-n", "-q")
    assert code == 0, err
    assert "local only: not pushed" in out and err == ""
    # built here, not in the registry
    tag = to.rpartition(":")[2]
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/test/sconectl_no_push/tags/list") as r:
            tags = json.load(r).get("tags") or []
    except urllib.error.HTTPError as err:  # no such repository: nothing was pushed
        assert err.code == 404
        tags = []
    assert tag not in tags


# --- manifest paths, as sconectl resolves them (against the current directory) --------------

def _versioned(work: Path) -> None:
    """The layout of sconectl's rolling-update example: v1/ with its service and program."""
    (work / "v1").mkdir()
    (work / "v1" / "app.py").write_text("print('v1')\n")
    (work / "v1" / "service.yaml").write_text(
        (work / "service.yaml").read_text().replace("print_env.py", "v1/app.py"))


def test_copy_paths_resolve_against_the_current_directory(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _versioned(work)
    code, _, err = run(capsys, "apply", "-f", "v1/service.yaml", "-d", prog="sconectl")
    assert code == 0 and err == ""
    staged = work / "target" / "python_hello_user" / "rootfs" / "python" / "v1" / "app.py"
    assert staged.read_text() == "print('v1')\n"


def test_a_file_only_beside_the_manifest_is_taken_with_a_warning_naming_both(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "sub").mkdir()
    shutil.move(str(work / "print_env.py"), work / "sub" / "print_env.py")
    shutil.copy(work / "service.yaml", work / "sub" / "service.yaml")
    code, _, err = run(capsys, "apply", "-f", "sub/service.yaml", "-d")
    assert code == 0
    assert err == (f"warning: print_env.py: not in the current directory ({work}/print_env.py); "
                   f"taken from the manifest's folder (sub/print_env.py). sconectl resolves it "
                   "against the current directory only\n")


def test_as_sconectl_a_file_only_beside_the_manifest_is_an_error_naming_both(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "sub").mkdir()
    shutil.move(str(work / "print_env.py"), work / "sub" / "print_env.py")
    shutil.copy(work / "service.yaml", work / "sub" / "service.yaml")
    assert run(capsys, "apply", "-f", "sub/service.yaml", "-d", prog="sconectl") == (2, "", (
        "error: 1 error in the service manifest\n"
        "  sub/service.yaml:33:7: error at build.copy[0]: not in the current directory "
        f"({work}/print_env.py), only beside the manifest (sub/print_env.py): sconectl "
        "resolves paths against the current directory, so run from sub or name it "
        "sub/print_env.py (got 'print_env.py'); allowed: a file or directory relative to the "
        "current directory, as sconectl reads it\n"))
    assert not (work / "target" / "python_hello_user").exists()  # no half-written context


def test_as_sconectl_requirements_only_beside_the_manifest_is_an_error(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "sub").mkdir()
    (work / "sub" / "requirements.txt").write_text("flask\n")
    (work / "sub" / "service.yaml").write_text((work / "service.yaml").read_text().replace(
        "  copy:", "  requirements: requirements.txt\n  copy:"))  # print_env.py: in work/
    code, _, err = run(capsys, "apply", "-f", "sub/service.yaml", "-d", prog="sconectl")
    assert code == 2
    assert err == (
        "error: 1 error in the service manifest\n"
        "  sub/service.yaml:32:17: error at build.requirements: not in the current directory "
        f"({work}/requirements.txt), only beside the manifest (sub/requirements.txt): sconectl "
        "resolves paths against the current directory, so run from sub or name it "
        "sub/requirements.txt (got 'requirements.txt'); allowed: a pip requirements file\n")
    # as sconectl wants it: named relative to the current directory
    (work / "sub" / "service.yaml").write_text((work / "sub" / "service.yaml").read_text()
                                               .replace("requirements.txt", "sub/requirements.txt"))
    code, _, err = run(capsys, "apply", "-f", "sub/service.yaml", "-d", prog="sconectl")
    assert (code, err) == (0, "")


@pytest.mark.parametrize("prog", ["sconectl", "veil"])
def test_a_file_in_both_places_is_the_current_directorys_with_a_warning_if_they_differ(
        work: Path, capsys: pytest.CaptureFixture[str], prog: str) -> None:
    (work / "sub").mkdir()
    shutil.copy(work / "service.yaml", work / "sub" / "service.yaml")
    shutil.copy(work / "print_env.py", work / "sub" / "print_env.py")
    code, _, err = run(capsys, "apply", "-f", "sub/service.yaml", "-d", prog=prog)
    assert (code, err) == (0, "")  # the same content: nothing to say
    (work / "sub" / "print_env.py").write_text("print('the other one')\n")
    code, _, err = run(capsys, "apply", "-f", "sub/service.yaml", "-d", prog=prog)
    assert (code, err) == (0, (
        f"warning: print_env.py: taken from the current directory ({work}/print_env.py), as "
        "sconectl takes it; the different sub/print_env.py beside the manifest is not used\n"))
    staged = work / "target" / "python_hello_user" / "rootfs" / "python" / "print_env.py"
    assert staged.read_bytes() == (work / "print_env.py").read_bytes()


def test_a_file_in_neither_place_names_both(work: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (work / "sub").mkdir()
    shutil.copy(work / "service.yaml", work / "sub" / "service.yaml")
    (work / "print_env.py").unlink()
    code, _, err = run(capsys, "apply", "-f", "sub/service.yaml", "-d")
    assert code == 2
    assert f"no such file or directory: neither {work}/print_env.py (current directory) nor " \
        "sub/print_env.py (manifest's folder)" in err


def test_stable_keeps_the_deployed_measurement(work: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "apply", "-f", "service.yaml", "-d")[0] == 0
    recorded = LocalIndex().get(IMAGE)
    assert recorded is not None  # a dry run measures nothing: make it as if built
    LocalIndex().put(replace(recorded, description=recorded.description.model_copy(
        update={"measurement": "ab" * 32})))
    v1 = LocalIndex().get(IMAGE)
    assert v1 is not None and v1.description.measurement
    text = (work / "service.yaml").read_text().replace(
        "python_hello_user:latest", "python_hello_user:2")
    (work / "v2.yaml").write_text(text.replace("  copy:", f"  stable: {IMAGE}\n  copy:"))
    (work / "print_env.py").write_text("print('v2')\n")
    code, out, err = run(capsys, "apply", "-f", "v2.yaml", "-d")
    assert code == 0, err
    v2 = LocalIndex().get(IMAGE.replace(":latest", ":2"))
    assert v2 is not None and v2.description.stable is not None
    assert v2.description.stable.measurement == v1.description.measurement
    assert v2.description.measurement != v1.description.measurement
    assert f"  stable       {IMAGE} ({v1.description.measurement}) stays accepted" in out
    # the next apply without `stable` accepts the new image only
    (work / "v2.yaml").write_text(text)
    assert run(capsys, "apply", "-f", "v2.yaml", "-d")[0] == 0
    again = LocalIndex().get(IMAGE.replace(":latest", ":2"))
    assert again is not None and again.description.stable is None


def test_stable_unknown_image(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (work / "service.yaml").read_text()
    (work / "service.yaml").write_text(text.replace("  copy:", "  stable: 127.0.0.1:1/x:1\n"
                                                    "  copy:"))
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-d")
    # a dry run asks no registry: the measurement of `stable` is read at build time
    assert code == 0 and "build.stable 127.0.0.1:1/x:1: not in the local index" in err


def test_host_paths_said_not_measured_with_a_production_warning(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (work / "service.yaml").read_text()
    (work / "service.yaml").write_text(text.replace("  copy:", "  host_paths:\n"
                                                    "    - /etc/ssl/certs\n  copy:"))
    code, out, err = run(capsys, "apply", "-f", "service.yaml", "-d")
    assert code == 0
    assert err == ("warning: build.host_paths /etc/ssl/certs: read from the host at run time, "
                   "outside the measurement: attestation says nothing about them\n")
    assert "  not measured /etc/ssl/certs (build.host_paths, from the host)\n" in out
    plan = json.loads((work / "target" / "python_hello_user" / "rootfs" / "etc" / "veil"
                       / "measured.json").read_text())
    assert "/etc/ssl/certs" in plan["exclude"]
    code, out, err = run(capsys, "apply", "-f", "service.yaml", "-d", "--mode", "debug")
    assert code == 0 and err == "" and "not measured /etc/ssl/certs" in out


@pytest.mark.parametrize("kind", ["java8", "java8-glibc", "java8-ubuntu"])
def test_java8_is_refused_with_its_line(work: Path, capsys: pytest.CaptureFixture[str],
                                        kind: str) -> None:
    text = (work / "service.yaml").read_text()
    (work / "service.yaml").write_text(text.replace("  kind: python", f"  kind: {kind}"))
    assert run(capsys, "apply", "-f", "service.yaml", "-d", prog="sconectl") == (2, "", (
        "error: cannot build service.yaml\n"
        f"  service.yaml:28:9: error at build.kind: build.kind {kind}: Veil has no Java 8 "
        "base: no Java 8 runtime is packaged where its bases come from (Debian bookworm: "
        "JRE 17; the JRE wheels on PyPI: 11 and later). Use java11, java17 or java21 (they "
        "run Java 8 jars), or name a base image with a Java 8 runtime in build.from "
        f"(got '{kind}'); allowed: python, java, java11, java17, java21 (each also -glibc, "
        "-ubuntu)\n"))
    # its variables can still be listed
    assert run(capsys, "apply", "-f", "service.yaml", "-p")[0] == 0


@pytest.mark.parametrize(("kind", "base"), [
    ("java", "java:17-bookworm"), ("java-glibc", "java:17-bookworm"),
    ("java11", "java:11-bookworm"), ("java11-glibc", "java:11-bookworm"),
    ("java17-glibc", "java:17-bookworm"), ("java21", "java:21-bookworm"),
    ("java21-glibc", "java:21-bookworm"),
])
def test_java_kinds_build_on_the_base_of_their_version(
        work: Path, capsys: pytest.CaptureFixture[str], kind: str, base: str) -> None:
    text = (work / "service.yaml").read_text()
    (work / "service.yaml").write_text(text.replace("  kind: python", f"  kind: {kind}"))
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-d")
    assert (code, err) == (0, "")
    desc = json.loads((work / "target" / "python_hello_user" / "description.json").read_text())
    assert desc["kind"] == kind and desc["base_image"] == f"127.0.0.1:5000/veil/{base}"


@pytest.mark.parametrize(("kind", "version"), [
    ("java-ubuntu", "17"), ("java11-ubuntu", "11"), ("java17-ubuntu", "17"),
    ("java21-ubuntu", "21")])
def test_ubuntu_kinds_are_built_on_the_debian_base_with_a_warning(
        work: Path, capsys: pytest.CaptureFixture[str], kind: str, version: str) -> None:
    text = (work / "service.yaml").read_text()
    (work / "service.yaml").write_text(text.replace("  kind: python", f"  kind: {kind}"))
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-d", prog="sconectl")
    assert (code, err) == (0, (
        f"warning: build.kind {kind}: Veil makes no Ubuntu base (`sconectl base create` "
        f"bootstraps Debian); built on the Debian bookworm base with Java {version} (glibc, "
        "as on Ubuntu) instead\n"))
    desc = json.loads((work / "target" / "python_hello_user" / "description.json").read_text())
    assert desc["base_image"] == f"127.0.0.1:5000/veil/java:{version}-bookworm"
    # a base the user names is theirs: no warning
    (work / "service.yaml").write_text(text.replace(
        "  kind: python", f"  kind: {kind}\n  from: 127.0.0.1:5000/mine/ubuntu-jre:1"))
    assert run(capsys, "apply", "-f", "service.yaml", "-d")[:3:2] == (0, "")


def test_java8_on_a_base_of_ones_own_is_built(work: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = (work / "service.yaml").read_text()
    (work / "service.yaml").write_text(text.replace(
        "  kind: python", "  kind: java8\n  from: 127.0.0.1:5000/mine/jre8:1"))
    assert run(capsys, "apply", "-f", "service.yaml", "-d")[::2] == (0, "")


# --- a mesh's image_secrets files, read as sconectl reads them ------------------------------

def _mesh_in_sub(work: Path, image_secrets: str) -> None:
    (work / "sub").mkdir(exist_ok=True)
    (work / "sub" / "mesh.yaml").write_text(MESH.replace(
        "    image: 127.0.0.1:5000/veil/python_hello_user:latest\n",
        "    image: 127.0.0.1:5000/veil/python_hello_user:latest\n"
        f"    image_secrets: {image_secrets}\n"))


SECRETS = "- name: extra_token\n  kind: ascii\n  size: 12\n"


def _session_secrets(work: Path) -> list[str]:
    session = json.loads((work / "target" / "policies" / "pythonapp.json").read_text())
    return [s["name"] for s in session["secrets"]]


def test_image_secrets_resolve_against_the_current_directory(
        recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mesh_in_sub(recorded, "sub/secrets.yaml")
    (recorded / "sub" / "secrets.yaml").write_text(SECRETS)
    code, _, err = run(capsys, "apply", "-f", "sub/mesh.yaml", "-d", prog="sconectl")
    assert (code, err) == (0, "")
    assert "extra_token" in _session_secrets(recorded)


def test_as_sconectl_image_secrets_only_beside_the_mesh_is_an_error_naming_both(
        recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mesh_in_sub(recorded, "secrets.yaml")
    (recorded / "sub" / "secrets.yaml").write_text(SECRETS)
    assert run(capsys, "apply", "-f", "sub/mesh.yaml", "-d", prog="sconectl") == (2, "", (
        "error: cannot read the image_secrets of sub/mesh.yaml\n"
        "  sub/mesh.yaml:12:20: error at services[0].image_secrets: not in the current "
        f"directory ({recorded}/secrets.yaml), only beside the manifest (sub/secrets.yaml): "
        "sconectl resolves paths against the current directory, so run from sub or name it "
        "sub/secrets.yaml (got 'secrets.yaml'); allowed: a file relative to the current "
        "directory, as sconectl reads it\n"))
    # as veil: taken from beside the mesh, with the warning
    code, _, err = run(capsys, "apply", "-f", "sub/mesh.yaml", "-d")
    assert (code, err) == (0, (
        f"warning: secrets.yaml: not in the current directory ({recorded}/secrets.yaml); "
        "taken from the manifest's folder (sub/secrets.yaml). sconectl resolves it against "
        "the current directory only\n"))
    assert "extra_token" in _session_secrets(recorded)


def test_image_secrets_in_neither_place_names_both(
        recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mesh_in_sub(recorded, "secrets.yaml")
    code, _, err = run(capsys, "apply", "-f", "sub/mesh.yaml", "-d")
    assert code == 2
    assert (f"error at services[0].image_secrets: no such file: neither {recorded}/secrets.yaml"
            " (current directory) nor sub/secrets.yaml (manifest's folder)") in err


# --- every spelling of every flag reaches the option it means ------------------------------

@pytest.mark.parametrize(("args", "field", "value"), [
    (["-f", "service.yaml"], "push", True),
    (["--file-name", "service.yaml"], "push", True),
    (["--filename", "service.yaml"], "push", True),
    (["-f", "service.yaml", "-n"], "push", False),
    (["-f", "service.yaml", "--no-push"], "push", False),
    (["-f", "service.yaml", "-d"], "dry_run", True),
    (["-f", "service.yaml", "--dry-run"], "dry_run", True),
    (["-f", "service.yaml", "-t", "out"], "target", Path("out")),
    (["-f", "service.yaml", "--target-directory", "out"], "target", Path("out")),
    (["-f", "service.yaml", "--target", "out"], "target", Path("out")),
    (["-f", "service.yaml", "--mode", "debug"], "mode", "debug"),
    (["-f", "service.yaml", "--mode=production"], "mode", "production"),
    (["-f", "service.yaml", "-h", "tpl"], "helm_template", Path("tpl")),
    (["-f", "service.yaml", "--helm-template", "tpl"], "helm_template", Path("tpl")),
    (["-f", "service.yaml", "--set-version", "latest"], "set_version", "latest"),
    (["-vvvv", "-f", "service.yaml", "-vvvvvvvv"], "verbose", 12),
    (["-f", "mesh.yaml"], "pull", True),
    (["-f", "mesh.yaml", "-n"], "pull", False),
    (["-f", "mesh.yaml", "--no-pull"], "pull", False),
    (["-f", "mesh.yaml", "--release", "r1"], "release", "r1"),
    (["-f", "mesh.yaml", "--release-version", "3"], "release_version", 3),
    (["-f", "mesh.yaml", "-o", "yaml"], "output", "yaml"),
    (["-f", "mesh.yaml", "--output", "helm_chart"], "output", "helm_chart"),
    (["-f", "mesh.yaml", "--policy-namespace", "ns2"], "policy_namespace", "ns2"),
    (["-f", "mesh.yaml", "--set-version", "latest"], "set_version", "latest"),
])
def test_each_flag_spelling_sets_its_option(work: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, args: list[str],
                                            field: str, value: object) -> None:
    import veil.cli.apply as apply_cli

    seen: list[object] = []
    monkeypatch.setattr(apply_cli, "apply_service",
                        lambda _f, _m, options, positions=None: seen.append(options))
    monkeypatch.setattr(apply_cli, "_apply_mesh",
                        lambda _doc, options, _diff: seen.append(options))
    code, _, err = run(capsys, "apply", *args, prog="sconectl")
    assert code == 0, err
    [options] = seen
    assert getattr(options, field) == value


@pytest.mark.parametrize("flag", ["-q", "--quiet", "--quite"])
def test_quiet_spellings(work: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    code, _, err = run(capsys, "apply", "-f", "service.yaml", "-d", flag, prog="sconectl")
    assert code == 0 and err == "" and state.quiet


def test_version_variable_is_not_read(work: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`VERSION` is the tutorials' shell variable, passed on with --set-version; too common a
    name to act on by itself."""
    monkeypatch.setenv("VERSION", "6.0.0")
    code, out, err = run(capsys, "apply", "-f", "service.yaml", "-d", prog="sconectl")
    assert (code, err) == (0, "") and "version" not in out
    entry = LocalIndex().get(IMAGE)
    assert entry is not None and entry.description.version is None


def test_release_version_and_set_version_are_recorded_in_the_chart_and_sessions(
        recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    policies = recorded / "target" / "policies"
    code, out, err = run(capsys, "apply", "-f", "mesh.yaml", "-d", "--release", "v1",
                         "--release-version", "7", "--set-version", "latest", "--mode=debug",
                         prog="sconectl")
    assert code == 0, err
    chart = (recorded / "target" / "helm" / "Chart.yaml").read_text()
    assert "\nversion: \"0.1.7\"\nappVersion: latest\n" in chart
    assert "(release v1, release version 7)" in out
    written = sorted(policies.glob("*.json"))
    assert written and all(json.loads(f.read_text())["release"] == {"name": "v1", "version": 7}
                           for f in written)
    code, _, err = run(capsys, "apply", "-f", "mesh.yaml", "-d", "--mode=debug")
    chart = (recorded / "target" / "helm" / "Chart.yaml").read_text()
    assert code == 0 and "\nversion: \"0.1.0\"\n" in chart and "appVersion" not in chart
    assert all("release" not in json.loads(f.read_text()) for f in policies.glob("*.json"))
