"""`veil cas ...` and `veil session ...` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.cas.conftest import CasServer
from tests.cas.helpers import session

pytestmark = pytest.mark.integration


def veil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veil", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_cas_init_and_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = veil("cas", "init", "--state-dir", str(state), "--addr", "127.0.0.1:9")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert veil("cas", "key", "--state-dir", str(state)).stdout.strip() == key
    assert oct((state / "master.key").stat().st_mode & 0o777) == "0o600"
    cfg = json.loads((Path(os.environ["VEIL_CONFIG_DIR"]) / "cas.json").read_text())
    assert cfg == {"addr": "127.0.0.1:9", "cas_key": key}
    # again: same key, nothing overwritten
    assert veil("cas", "init", "--state-dir", str(state)).stdout.strip() == key
    missing = veil("cas", "key", "--state-dir", str(tmp_path / "none"))
    assert missing.returncode == 2 and "veil cas init" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_session_commands(cas: CasServer, tmp_path: Path) -> None:
    ns = "cli-" + uuid.uuid4().hex[:8]
    f = tmp_path / "s.yaml"
    YAML().dump(session(), f)
    env = {"VEIL_CAS_ADDR": cas.addr, "VEIL_CAS_KEY": cas.key}
    assert veil("session", "check", "-f", str(f)).returncode == 0
    local = veil("session", "hash", "-f", str(f)).stdout.strip()
    r = veil("session", "create", "-f", str(f), "-n", ns, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == local
    again = veil("session", "create", "-f", str(f), "-n", ns, env=env)
    assert again.returncode == 2 and "409" in again.stderr and "Traceback" not in again.stderr
    up = veil(
        "session",
        "update",
        "-f",
        str(f),
        "-n",
        ns,
        "--from-current",
        "--cas",
        cas.addr,
        "--cas-key",
        cas.key,
    )
    assert up.returncode == 0, up.stderr
    remote = veil("session", "hash", "hello", "-n", ns, env=env).stdout.strip()
    assert remote == up.stdout.strip() != local
    hist = veil("session", "history", "hello", "-n", ns, env=env)
    assert hist.returncode == 0 and local in hist.stdout and remote in hist.stdout
    read = json.loads(veil("session", "read", "hello", "-n", ns, env=env).stdout)
    assert read["version"] == 2
    stale = veil("session", "update", "-f", str(f), "-n", ns, "--predecessor", local, env=env)
    assert stale.returncode == 2 and "409" in stale.stderr


def test_bad_input_exit_codes(cas: CasServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: '0.3'\nname: x\nsecrets: [{name: a, kind: nope}]\n")
    r = veil("session", "check", "-f", str(bad))
    assert r.returncode == 2 and f"{bad}:3" in r.stderr and "Traceback" not in r.stderr
    r = veil("session", "read", "x", "-n", "y", "--cas", cas.addr, "--cas-key", "AAAA")
    assert r.returncode == 1 and "pinned" in r.stderr
    r = veil("session", "read", "x", "-n", "y", env={"VEIL_CAS_ADDR": ""})
    assert r.returncode == 2 and "--cas" in r.stderr
