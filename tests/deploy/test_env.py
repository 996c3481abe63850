"""Environment by phase: what the code reads (static scan) against platform, build and deploy."""

from __future__ import annotations

from pathlib import Path

from veil.deploy.envcheck import env_table
from veil.deploy.envscan import scan_tree
from veil.wrap.config import env_for

CODE = '''\
import os
import os as system
from os import environ, getenv as ge
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic import Field

URL = os.environ["MODEL_URL"]
A = os.getenv("THRESHOLD", "0.5")
B = os.environ.get("REGION")
C = environ.get("ENVIRON_GET")
D = system.environ["ALIASED_OS"]
E = ge("GETENV_IMPORTED")
F = os.environ.setdefault("SETDEFAULT", "x")
G = os.environ[f"{URL}_COMPUTED"]
H = environ["ENVIRON_SUB"]

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="app_")
    db_url: str
    pool: int = 5
    token: str = Field(alias="API_TOKEN")
    retries: int = Field(3)
    _private: int = 1

def unrelated(request):
    return request.environ.get("HTTP_HOST"), {"x": 1}.get("NOT_ENV")
'''


def _reads(tmp_path: Path) -> dict[str, tuple[int, str, bool]]:
    (tmp_path / "model.py").write_text(CODE)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "dep.py").write_text("import os\nos.environ['FROM_VENV']\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    return {r.name or "?": (r.line, r.how, r.has_default) for r in scan_tree(tmp_path)}


def test_scan_finds_every_way_of_reading_and_whether_it_has_a_default(tmp_path: Path) -> None:
    reads = _reads(tmp_path)
    assert reads["MODEL_URL"] == (7, "os.environ[...]", False)
    assert reads["THRESHOLD"] == (8, "os.getenv", True)
    assert reads["REGION"] == (9, "os.environ.get", True)
    assert reads["ENVIRON_GET"][2] is True
    assert reads["ALIASED_OS"] == (11, "os.environ[...]", False)
    assert reads["GETENV_IMPORTED"] == (12, "os.getenv", True)
    assert reads["SETDEFAULT"][2] is True
    assert reads["ENVIRON_SUB"][2] is False
    assert reads["?"][0] == 14  # the computed name is reported where it is
    assert reads["APP_DB_URL"] == (19, "pydantic-settings", False)
    assert reads["APP_POOL"][2] is True
    assert reads["API_TOKEN"][2] is False  # Field(alias=...) without a default
    assert reads["APP_RETRIES"][2] is True
    # not environment reads; a virtualenv and an unparsable file are skipped, not fatal
    for name in ("HTTP_HOST", "NOT_ENV", "FROM_VENV", "APP__PRIVATE"):
        assert name not in reads


def test_table_missing_is_an_error_default_a_warning_conflicts_name_both_phases(
        tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "import os\nos.environ['NEEDED']\nos.environ['FROM_IMAGE']\nos.getenv('OPTIONAL')\n"
        "os.environ['BOTH']\nos.environ['SAME']\nos.environ['POD_NAME']\n")
    reads = scan_tree(tmp_path)
    table = env_table(reads, (), platform={"POD_NAME": "downward API"},
                      image_env={"FROM_IMAGE": "1", "BOTH": "secret-a", "SAME": "v"},
                      deploy_env={"BOTH": "secret-b", "SAME": "v", "POD_NAME": "x"})
    rows = {r.name: r for r in table.rows}
    assert rows["NEEDED"].status == "missing" and rows["NEEDED"].phases == []
    assert len(table.errors) == 1 and "NEEDED" in table.errors[0] and "m.py:2" in table.errors[0]
    assert rows["FROM_IMAGE"].phases == ["build"] and rows["FROM_IMAGE"].status == "ok"
    assert rows["OPTIONAL"].status == "default"
    assert rows["BOTH"].status == "overridden" and rows["SAME"].status == "ok"
    assert rows["POD_NAME"].phases == ["platform", "deploy"]
    warnings = "\n".join(table.warnings)
    assert "OPTIONAL is supplied by no phase" in warnings
    assert "BOTH: set at build (image) and at deploy with different values" in warnings
    assert "POD_NAME: set by the platform and at deploy" in warnings
    assert "secret-a" not in warnings + "\n".join(table.errors)  # values are never shown
    assert "secret-b" not in warnings


def test_wrapper_declarations_count_as_needs(tmp_path: Path) -> None:
    table = env_table([], env_for("kafka"), platform={}, image_env={
        "VEIL_ENTRYPOINT": "model:predict"}, deploy_env={"KAFKA_INPUT_TOPIC": "in"})
    missing = {r.name for r in table.rows if r.status == "missing"}
    assert missing == {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_OUTPUT_TOPIC", "KAFKA_DLQ_TOPIC"}
    # the wrapper's documented defaults are notes, not warnings
    rows = {r.name: r for r in table.rows}
    assert rows["KAFKA_GROUP_ID"].status == "default"
    assert rows["KAFKA_GROUP_ID"].note == "wrapper default"
    assert not any("KAFKA_GROUP_ID" in w for w in table.warnings)
