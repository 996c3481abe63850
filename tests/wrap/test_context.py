"""prepare_context and `veil wrap`: what lands in the build context, atomically and repeatably."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tests.wrap.conftest import EXAMPLE_REPO
from veil.cli import main
from veil.errors import ManifestError, UserError
from veil.manifest.load import load_genservice
from veil.manifest.models import GenService
from veil.wrap import FLASK_ENV, KAFKA_ENV, merge_requirements, prepare_context


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "lib" / "__pycache__").mkdir(parents=True)
    (repo / ".git").mkdir()
    (repo / ".git" / "HEAD").write_text("ref")
    (repo / "lib" / "__init__.py").write_text("")
    (repo / "lib" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (repo / "lib" / "util.py").write_text("def double(x):\n    return 2 * x\n")
    (repo / "model.py").write_text(
        "from lib.util import double\n\ndef predict(p):\n    return {'y': double(p['x'])}\n")
    (repo / "requirements.txt").write_text("# deps\nFlask==3.0.3\nnumpy>=1.26\n\n")
    return repo


def test_context_files_requirements_and_containerfile(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    result = prepare_context(repo, "flask", "model:predict", tmp_path / "ctx", base_image="py:1")
    ctx = result.dest_dir
    assert result.files == ("lib", "model.py")
    assert (ctx / "lib" / "util.py").is_file() and (ctx / "model.py").is_file()
    assert not (ctx / ".git").exists() and not (ctx / "lib" / "__pycache__").exists()
    assert (ctx / "veil_runner" / "flask_app.py").is_file()
    assert not list((ctx / "veil_runner").glob("**/__pycache__"))
    # The customer's pin of Flask wins; what the runner needs and the customer lacks is added.
    assert (ctx / "requirements.txt").read_text().splitlines() == [
        "Flask==3.0.3", "numpy>=1.26", "gunicorn>=22", "prometheus-client>=0.20"]
    lines = (ctx / "Containerfile").read_text().splitlines()
    assert lines[1] == "FROM py:1"
    order = [next(i for i, ln in enumerate(lines) if ln.startswith(p)) for p in (
        "COPY requirements.txt", "RUN python3 -m pip", "COPY veil_runner/", "COPY lib/",
        "COPY model.py", "RUN python3 -m veil_runner check")]
    assert order == sorted(order), "base → requirements → runner → application files"
    assert lines[-1] == 'CMD ["python3", "-m", "veil_runner", "flask"]'
    assert result.env == FLASK_ENV and result.command_line == "python3 -m veil_runner flask"


def test_same_input_same_bytes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    a = prepare_context(repo, "kafka", "model:predict", tmp_path / "a").dest_dir
    b = prepare_context(repo, "kafka", "model:predict", tmp_path / "b").dest_dir
    cmp = filecmp.dircmp(a, b)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert (a / "Containerfile").read_bytes() == (b / "Containerfile").read_bytes()


def test_a_failed_wrap_leaves_the_old_output_untouched(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    out = tmp_path / "out"
    prepare_context(repo, "flask", "model:predict", out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ManifestError):
        prepare_context(repo, "flask", "model:missing", out)
    with pytest.raises(UserError):
        prepare_context(repo, "grpc", "model:predict", out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_inside_the_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    result = prepare_context(repo, "flask", "model:predict", repo / "build" / "ctx")
    assert result.files == ("lib", "model.py")
    with pytest.raises(UserError, match="would replace the repository"):
        prepare_context(repo, "flask", "model:predict", repo)


def test_merge_requirements_normalises_names() -> None:
    assert merge_requirements(["prometheus_client==0.19", "-r extra.txt"],
                              ["prometheus-client>=0.20", "flask>=3"]) == [
        "prometheus_client==0.19", "-r extra.txt", "flask>=3"]


def test_cli_writes_a_service_manifest_veil_apply_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["wrap", "kafka", str(EXAMPLE_REPO), "-e", "model:Classifier", "-o", str(out),
                 "--to", "127.0.0.1:5000/demo/model:1", "--name", "model"])
    assert code == 0, capsys.readouterr().err
    assert "a class" in capsys.readouterr().out
    loaded = load_genservice(out / "service.yaml")
    svc = loaded.model
    assert isinstance(svc, GenService)
    assert (svc.build.wrap, svc.build.entrypoint) == ("kafka", "model:Classifier")
    assert svc.build.to == "127.0.0.1:5000/demo/model:1" and svc.build.pwd == "/app"
    assert svc.build.copy_ == ["README.md", "model.py", "veil_runner"]
    assert [(v.name, v.value) for v in svc.environment.local] == [
        ("VEIL_ENTRYPOINT", "model:Classifier")]
    declared = {v.name: v.value for v in svc.environment.global_}
    expected = {v.name: v.default for v in KAFKA_ENV if v.name != "VEIL_ENTRYPOINT"}
    assert declared == expected
    assert "required" in (out / "service.yaml").read_text()


def test_cli_errors_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["wrap", "flask", str(EXAMPLE_REPO), "-e", "model:nothing", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model.py" in err and "has no attribute 'nothing'" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["wrap", "flask", str(tmp_path / "nope"), "-e", "m:f", "-o", str(out)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_env_lists_every_declared_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wrap", "env", "flask"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == [v.name for v in FLASK_ENV]
    assert lines[0].split()[1] == "(required)"
    assert main(["wrap", "env", "grpc"]) == 2


def test_output_that_is_a_file_of_the_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    model = repo / "model.py"
    before = model.read_bytes()
    with pytest.raises(UserError, match="not a folder"):
        prepare_context(repo, "flask", "model:predict", model)
    assert model.read_bytes() == before
    assert not [p.name for p in repo.iterdir() if p.name.endswith(".old")]


def test_output_folder_with_other_files_is_not_replaced(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    with pytest.raises(UserError, match="did not write"):
        prepare_context(repo, "flask", "model:predict", mine)
    assert (mine / "notes.txt").read_text() == "keep\n"
    prepare_context(repo, "flask", "model:predict", tmp_path / "out")
    prepare_context(repo, "kafka", "model:predict", tmp_path / "out")  # its own output: replaced
    assert "kafka" in (tmp_path / "out" / "Containerfile").read_text()


def test_links_out_of_the_repository_are_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "id_rsa").write_text("private\n")
    (repo / "data").symlink_to(tmp_path / "host")
    with pytest.raises(UserError, match="outside the repository"):
        prepare_context(repo, "flask", "model:predict", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "ref", "why"), [
    ("--to", "127.0.0.1:5000/UP per", "no spaces"),
    ("--to", "127.0.0.1:5000/Upper:1", "lower-case"),
    ("--from", "bad base", "no spaces"),
])
def test_cli_bad_image_references_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, ref: str, why: str
) -> None:
    out = tmp_path / "out"
    code = main(["wrap", "flask", str(EXAMPLE_REPO), "-e", "model:predict", "-o", str(out),
                 flag, ref])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and why in err
    assert not out.exists()
