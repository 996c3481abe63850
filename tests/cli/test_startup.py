"""Start-up: `--version` and the root help load nothing heavy; a command loads only itself.

Timings are in bench/bench_startup.py; here, what is imported (a fact, not a measurement).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from veil import cli

HEAVY = ("typer", "rich", "pydantic", "httpx", "jinja2", "ruamel", "fastapi", "cryptography",
         "sqlalchemy", "uvicorn", "kubernetes_validate", "helm_python")
# what a service's `apply --dry-run` needs none of: servers, clients, the chart tooling, the
# template engine (a service manifest without templates)
NOT_FOR_A_DRY_RUN = ("httpx", "fastapi", "sqlalchemy", "cryptography", "uvicorn",
                     "kubernetes_validate", "helm_python", "jinja2")


def _modules_after(*args: str) -> set[str]:
    code = ("import sys; from veil.cli import main; rc = main(sys.argv[1:]); "
            "print('\\n'.join(sorted(sys.modules)), file=sys.stderr); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return set(p.stderr.split())


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"], [], ["-v", "--version"]])
def test_version_and_root_help_load_nothing_heavy(args: list[str]) -> None:
    loaded = _modules_after(*args)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert not [m for m in loaded if m.startswith("veil.") and m not in (
        "veil.cli", "veil.__main__")]


def test_a_command_loads_only_its_own_module() -> None:
    loaded = _modules_after("schema", "--help")
    commands = {m.split(".")[2] for m in loaded
                if m.startswith("veil.cli.") and not m.split(".")[2].startswith("_")}
    assert commands == {"schema"}


def test_a_group_loads_the_modules_that_add_to_it() -> None:
    loaded = _modules_after("cas", "--help")
    assert {"veil.cli.cas", "veil.cli.cas_trust"} <= loaded
    assert "veil.cli.apply" not in loaded


def test_root_help_lists_every_command_with_its_own_help() -> None:
    """COMMANDS (what `veil --help` prints) says what each module's command says of itself;
    a command not in the table yet is listed with its module's docstring."""
    app = cli.app
    group = typer.main.get_command(app)
    registered = {name: c.get_short_help_str(limit=1000)
                  for name, c in group.commands.items()}  # type: ignore[attr-defined]
    assert set(registered) == {m.replace("_", "-") for m in cli._command_modules()}
    listed = {n: h for n, h in cli.COMMANDS.items() if n in registered}
    assert listed == {n: registered[n] for n in listed}, "update COMMANDS in veil/cli/__init__.py"
    text = cli._root_help("veil")
    for name in registered:
        assert re.search(rf"^  {name} +\S", text, re.M), f"{name} without help in:\n{text}"


def test_root_help_lists_every_root_option() -> None:
    group = typer.main.get_command(cli.app)
    listed = {w.strip(",") for flags, _ in cli.ROOT_OPTIONS for w in flags.split()}
    for p in group.params:
        assert set(p.opts) & listed, f"{p.opts}: update ROOT_OPTIONS in src/veil/cli/__init__.py"
    helps = {p.help for p in group.params}
    assert helps <= {h for _, h in cli.ROOT_OPTIONS}


def test_root_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: veil [OPTIONS] COMMAND [ARGS]...\n")
    assert re.search(r"^  apply +Apply a service manifest or a mesh \(dispatching on `kind`\)\.$",
                     out, re.M)
    assert "  -v, --verbose     More output; repeat it (-vv) to see tracebacks." in out


def test_sconectl_names_itself(capsys: pytest.CaptureFixture[str]) -> None:
    from veil.cli._app import program_name

    for argv0 in ("/usr/bin/sconectl", "veil", "./sconectl-5.8", "python3"):
        assert cli._program(argv0) == program_name(argv0)
    assert cli.main(["-V"], prog="sconectl") == 0
    assert capsys.readouterr().out.startswith("sconectl 0")
    assert cli.main(["-vvvv", "--help"], prog="sconectl") == 0
    assert capsys.readouterr().out.startswith("Usage: sconectl [OPTIONS]")


def test_a_service_dry_run_loads_no_mesh_cas_or_registry_client(tmp_path: Path) -> None:
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello-user" / "service.yaml"
    loaded = _modules_after("apply", "-f", str(hello), "--dry-run", "-t", str(tmp_path / "t"))
    unwanted = sorted(m for m in loaded if m.split(".")[0] in NOT_FOR_A_DRY_RUN
                      or m.startswith(("veil.mesh", "veil.cas", "veil.resolve.env",
                                       "veil.deploy.chart.files")))
    assert unwanted == []


def test_a_dry_run_builds_no_model_of_a_mesh(tmp_path: Path) -> None:
    """The mesh's pydantic models are built when first used (defer_build), not when
    `veil.manifest.models` is imported: a service's dry run builds only its own."""
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello-user" / "service.yaml"
    code = ("import sys; from veil.cli import main; rc = main(sys.argv[1:]); "
            "from veil.manifest import models; "
            "print(models.Mesh.__pydantic_complete__, models.GenService.__pydantic_complete__, "
            "file=sys.stderr); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "apply", "-f", str(hello), "--dry-run",
                        "-t", str(tmp_path / "t")], capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stderr.split()[-2:] == ["False", "True"]


def test_python_X_importtime_of_version_and_dry_run(tmp_path: Path) -> None:
    """As a user would look: `python3 -X importtime -m veil ...` lists no heavy module."""
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello-user" / "service.yaml"
    for args, heavy in ((["--version"], HEAVY), (["--help"], HEAVY),
                        (["apply", "-f", str(hello), "--dry-run", "-t", str(tmp_path / "t")],
                         NOT_FOR_A_DRY_RUN)):
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "veil", *args],
                           capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
                    if line.startswith("import time:")}
        assert len(imported) > 10  # the lines were read
        assert sorted(m for m in imported if m.split(".")[0] in heavy) == [], args
