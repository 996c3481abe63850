"""The build context and its measurement plan (no container tools needed).

The measurement itself is computed from the built image (tests/image/test_build.py, tests/e2e).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ManifestError
from veil.image.context import BuildContext, stage_context
from veil.manifest.load import load_genservice
from veil.runtime.measure import RUNTIME_PATHS, MeasurementPlan

MANIFEST = """\
apiVersion: scone/5.8
kind: genservice
environment:
  local:
    - name: MODE
      value: {mode}
build:
  name: demo
  to: 127.0.0.1:5000/demo/app:1
  pwd: /app
  command: {command}
  copy:
{copy}
  run:
    - >
      echo one
      && echo two
injection_files:
  - path: /app/config.ini
    content: "x"
"""


def write(dir: Path, *, mode: str = "a", command: str = "python3 app.py",
          copy: tuple[str, ...] = ("app.py", "lib"), body: str = "print('hi')\n") -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "app.py").write_text(body)
    (dir / "lib").mkdir(exist_ok=True)
    (dir / "lib" / "util.py").write_text("X = 1\n")
    text = MANIFEST.format(mode=mode, command=command,
                           copy="\n".join(f"    - {c}" for c in copy))
    (dir / "service.yaml").write_text(text)
    return dir / "service.yaml"


def stage(manifest: Path, out: Path) -> BuildContext:
    loaded = load_genservice(manifest)
    out.mkdir(parents=True)
    return stage_context(loaded.model, manifest.parent, out, base="base@sha256:" + "0" * 64,
                         site_packages=None, requirements_dir=None,
                         positions=loaded.positions)


def plan_of(tmp: Path, name: str, **kw: object) -> bytes:
    ctx = stage(write(tmp / f"src-{name}", **kw), tmp / f"ctx-{name}")  # type: ignore[arg-type]
    return (ctx.dir / "rootfs/etc/veil/measured.json").read_bytes()


def test_without_run_steps_the_application_is_the_last_layer(tmp_path: Path) -> None:
    manifest = write(tmp_path / "src")
    text = manifest.read_text()
    manifest.write_text(text[:text.index("  run:")] + text[text.index("injection_files:"):])
    ctx = stage(manifest, tmp_path / "ctx")
    steps = [ln.split()[0] + " " + ln.split()[1] for ln in ctx.containerfile.splitlines()
             if ln and not ln.startswith("#")]
    assert steps[:4] == ["FROM base@sha256:" + "0" * 64, "COPY rootfs/opt/veil/",
                         "COPY rootfs/etc/veil/", "COPY rootfs/app/"]


def test_layers_are_ordered_for_the_cache(tmp_path: Path) -> None:
    ctx = stage(write(tmp_path / "src"), tmp_path / "ctx")
    steps = [ln.split()[0] + " " + ln.split()[1] for ln in ctx.containerfile.splitlines()
             if ln and not ln.startswith("#")]
    # sconectl's order with `run:` steps: they see the copied files; launcher and plan after
    assert steps[:5] == ["FROM base@sha256:" + "0" * 64, "COPY rootfs/app/", "RUN echo",
                         "COPY rootfs/opt/veil/", "COPY rootfs/etc/veil/"]
    # the folded multi-line run command is one RUN line
    assert "RUN echo one && echo two" in ctx.containerfile
    assert (ctx.dir / "rootfs/app/lib/util.py").read_text() == "X = 1\n"
    assert (ctx.dir / "rootfs/opt/veil/veil/runtime/launcher.py").exists()
    plan = MeasurementPlan.from_json((ctx.dir / "rootfs/etc/veil/measured.json").read_text())
    # the whole root filesystem, minus the runtime paths and the injection file
    assert plan.roots == ["/"]
    assert plan.exclude == sorted([*RUNTIME_PATHS, "/app/config.ini"])
    assert (plan.command, plan.pwd, plan.local_env) == ("python3 app.py", "/app", {"MODE": "a"})
    assert plan == ctx.plan


def test_identical_inputs_give_an_identical_plan(tmp_path: Path) -> None:
    assert plan_of(tmp_path, "a") == plan_of(tmp_path, "b")


@pytest.mark.parametrize("change", [{"command": "python3 app.py --debug"}, {"mode": "b"}])
def test_command_and_local_env_change_the_plan(tmp_path: Path, change: dict[str, str]) -> None:
    assert plan_of(tmp_path, "orig") != plan_of(tmp_path, "changed", **change)


@pytest.mark.parametrize("pwd", ["/tmp/app", "/run", "/var/tmp/x", "/opt/veil/app", "/proc"])
def test_pwd_in_an_unmeasured_or_reserved_path_is_refused(tmp_path: Path, pwd: str) -> None:
    manifest = write(tmp_path / "src")
    manifest.write_text(manifest.read_text().replace("pwd: /app", f"pwd: {pwd}"))
    with pytest.raises(ManifestError) as err:
        stage(manifest, tmp_path / "ctx")
    assert any("build.pwd" in p.render() for p in err.value.problems)


@pytest.mark.parametrize("target", ["/opt/veil/veil/runtime/launcher.py",
                                    "/etc/veil/measured.json", "relative.conf", "/"])
def test_injection_files_cannot_leave_the_launcher_or_its_plan_unmeasured(
    tmp_path: Path, target: str
) -> None:
    manifest = write(tmp_path / "src")
    manifest.write_text(manifest.read_text().replace("/app/config.ini", target))
    with pytest.raises(ManifestError) as err:
        stage(manifest, tmp_path / "ctx")
    rendered = [p.render() for p in err.value.problems]
    assert any("injection_files[0].path" in r and "Veil's own folders" in r for r in rendered)


def test_missing_copy_entry_is_reported_with_its_line(tmp_path: Path) -> None:
    manifest = write(tmp_path / "src", copy=("app.py", "nope.py", "../etc/passwd"))
    with pytest.raises(ManifestError) as err:
        stage(manifest, tmp_path / "ctx")
    rendered = [p.render() for p in err.value.problems]
    assert any("service.yaml:14:7" in r and "build.copy[1]" in r and "nope.py" in r
               for r in rendered), rendered
    assert any("build.copy[2]" in r and "inside the manifest's directory" in r for r in rendered)
