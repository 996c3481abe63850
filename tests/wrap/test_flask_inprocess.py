"""The Flask app in-process, for what is hard to time through gunicorn: readiness while load()
runs, and a load() that fails."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from veil.wrap.runner.flask_app import create_app
from veil.wrap.runner.settings import ConfigError

MODEL = '''
import threading

GATE = threading.Event()

class Slow:
    def load(self):
        GATE.wait(10)

    def predict(self, payload):
        return {"ok": True}

class Fast:
    def predict(self, payload):
        return {"ok": True}

class Broken:
    def load(self):
        raise OSError("weights file missing")

    def predict(self, payload):
        return {}
'''


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    # create_app points the root logger at JSON on stderr; give pytest its handlers back.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    name = f"m{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / f"{name}.py"


def test_not_ready_until_load_returns(repo: Path) -> None:
    app = create_app({"VEIL_ENTRYPOINT": f"{repo.stem}:Slow", "ACCESS_LOG": "false"})
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    r = client.post("/predict", json={})
    assert r.status_code == 503 and r.json["error"] == "not_ready"
    import importlib

    importlib.import_module(repo.stem).GATE.set()
    deadline = time.monotonic() + 5
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.post("/predict", json={}).json == {"ok": True}


def test_failed_load_makes_health_fail(repo: Path) -> None:
    app = create_app({"VEIL_ENTRYPOINT": f"{repo.stem}:Broken"})
    client = app.test_client()
    deadline = time.monotonic() + 5
    while client.get("/health").status_code != 500:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.get("/ready").status_code == 503
    assert "weights" not in client.get("/health").text


def test_configuration_errors_name_every_variable() -> None:
    with pytest.raises(ConfigError) as info:
        create_app({"HTTP_PORT": "eighty", "ACCESS_LOG": "maybe"})
    text = str(info.value)
    assert "VEIL_ENTRYPOINT is required" in text
    assert "HTTP_PORT='eighty' is not a valid int" in text
    assert "ACCESS_LOG='maybe' is not a valid bool" in text


def test_json_nested_100000_deep_is_a_400(repo: Path) -> None:
    app = create_app({"VEIL_ENTRYPOINT": f"{repo.stem}:Fast", "ACCESS_LOG": "false"})
    client = app.test_client()
    deadline = time.monotonic() + 5
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for opening, closing in (("[", "]"), ('{"a":', "}")):
        body = opening * 100_000 + "1" + closing * 100_000
        r = client.post("/predict", data=body, content_type="application/json")
        assert r.status_code == 400 and r.json["error"] == "bad_request", r.text
        assert "nested too deeply" in r.json["message"]
    assert client.post("/predict", json={"a": [[[1]]]}).status_code == 200  # control
