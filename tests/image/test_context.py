"""The build context and the measurement computed from it (no container tools needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ManifestError
from veil.image.context import BuildContext, measure_context, stage_context
from veil.manifest.load import load_genservice
from veil.runtime.measure import FileEntry, MeasurementPlan, measure

INTERP_PATHS = ["/usr/bin/python3", "/usr/bin/python3.11"]
INTERP = [FileEntry("/usr/bin/python3", "link", "a" * 64),
          FileEntry("/usr/bin/python3.11", "0755", "b" * 64)]

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
                         interpreter_paths=INTERP_PATHS, positions=loaded.positions)


def measurement(tmp: Path, name: str, **kw: object) -> str:
    ctx = stage(write(tmp / f"src-{name}", **kw), tmp / f"ctx-{name}")  # type: ignore[arg-type]
    return measure_context(ctx, INTERP_PATHS, INTERP)


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
    assert plan.roots == sorted(["/opt/veil", "/app", *INTERP_PATHS])
    assert plan.exclude == ["/app/config.ini"]


def test_identical_inputs_give_identical_measurement(tmp_path: Path) -> None:
    assert measurement(tmp_path, "a") == measurement(tmp_path, "b")


@pytest.mark.parametrize("change", [
    {"body": "print('hi!')\n"}, {"command": "python3 app.py --debug"}, {"mode": "b"},
])
def test_any_measured_change_changes_the_measurement(tmp_path: Path,
                                                     change: dict[str, str]) -> None:
    assert measurement(tmp_path, "orig") != measurement(tmp_path, "changed", **change)


def test_build_measurement_equals_measurement_of_the_image_tree(tmp_path: Path) -> None:
    """What the launcher computes from `/` equals what the build computed (staged + base)."""
    ctx = stage(write(tmp_path / "src"), tmp_path / "ctx")
    root = ctx.dir / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_bytes(b"\x7fELF interpreter")
    (root / "usr/bin/python3.11").chmod(0o755)
    (root / "usr/bin/python3").symlink_to("python3.11")
    from veil.image.interpreter import interpreter_of_rootfs

    interp = interpreter_of_rootfs(str(root))
    assert interp.paths == INTERP_PATHS and interp.version == "3.11"
    built = measure_context(ctx, interp.paths, interp.entries)
    plan = MeasurementPlan.from_json((root / "etc/veil/measured.json").read_text())
    assert measure(str(root), plan) == built
    (root / "app/config.ini").write_text("written by the launcher")  # excluded
    assert measure(str(root), plan) == built
    (root / "app/json.py").write_text("# shadows the standard library")
    assert measure(str(root), plan) != built


def test_missing_copy_entry_is_reported_with_its_line(tmp_path: Path) -> None:
    manifest = write(tmp_path / "src", copy=("app.py", "nope.py", "../etc/passwd"))
    with pytest.raises(ManifestError) as err:
        stage(manifest, tmp_path / "ctx")
    rendered = [p.render() for p in err.value.problems]
    assert any("service.yaml:14:7" in r and "build.copy[1]" in r and "nope.py" in r
               for r in rendered), rendered
    assert any("build.copy[2]" in r and "inside the manifest's directory" in r for r in rendered)
