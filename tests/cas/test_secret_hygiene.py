"""Secret values and the master key appear nowhere but in the configuration an attested service
receives: not in CAS's log, its database (sessions, sealed secrets, audit chain), CLI output,
error messages or refusals — including when the document is wrong or provisioning fails."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.cas.conftest import CasServer
from tests.cas.helpers import M1, M2, Launcher, session
from tests.cas.test_cli import veil
from veil.cas.state import load_keyring
from veil.errors import ManifestError
from veil.session.load import load_session, session_from_data

pytestmark = pytest.mark.integration

EXPLICIT = "explicit-" + uuid.uuid4().hex


def _forms(value: bytes) -> set[bytes]:
    """How a value could show up: as is, hex, base64 (whole, and a middle piece of it)."""
    b64 = base64.b64encode(value)
    out = {value, value.hex().encode(), b64}
    if len(b64) > 40:
        out.add(b64[8:40])
    return out


def _hygiene_doc() -> dict[str, Any]:
    doc = session("hy")
    doc["secrets"] = [
        {"name": "password", "kind": "ascii", "size": 24},
        {"name": "raw", "kind": "binary", "size": 32},
        {"name": "api", "kind": "explicit", "value": EXPLICIT},
        {"name": "tls", "kind": "x509", "dns": ["app.example"]},
    ]
    doc["services"][0]["environment"].update(
        {"API": "$$SCONE::api$$", "RAW": "$$SCONE::raw:hex$$", "TLS_KEY": "$$SCONE::tls:key$$"}
    )
    return doc


def _assert_clean(where: str, blob: bytes, needles: dict[str, set[bytes]]) -> None:
    for name, forms in needles.items():
        for form in forms:
            assert form not in blob, f"{name} found in {where}"


@pytest.fixture(scope="module")
def own_cas(cas_factory: Callable[..., CasServer]) -> CasServer:
    return cas_factory()  # its own log and database: nothing else's secrets in them


def test_no_secret_or_master_key_leaves_cas(own_cas: CasServer, tmp_path: Path) -> None:
    cas = own_cas
    ns = "hy-" + uuid.uuid4().hex[:8]
    env = {"VEIL_CAS_ADDR": cas.addr, "VEIL_CAS_KEY": cas.key}
    f = tmp_path / "s.yaml"
    YAML().dump(_hygiene_doc(), f)
    outputs: list[tuple[str, str]] = []

    def run(*args: str) -> str:
        r = veil(*args, env=env)
        outputs.append((" ".join(args[:2]), r.stdout + r.stderr))
        return r.stdout

    run("session", "check", "-f", str(f))
    run("session", "create", "-f", str(f), "-n", ns)
    read = json.loads(run("session", "read", "hy", "-n", ns))
    run("session", "history", "hy", "-n", ns)
    run("session", "hash", "hy", "-n", ns)
    # read returns every definition, never a value
    assert {s["name"]: s.get("value") for s in read["session"]["secrets"]} == {
        "password": None, "raw": None, "api": "<explicit>", "tls": None,
    }

    launcher = Launcher(cas.addr, cas.files.cert.read_bytes())
    try:
        ok = launcher.attest(f"{ns}/hy/app")
        assert ok.status_code == 200
        refused = launcher.attest(f"{ns}/hy/app", measurement=M2)
        assert refused.status_code == 403
        responses = [("refused provisioning", refused.text)]
    finally:
        launcher.close()
    got = ok.json()["env"]
    assert got["API"] == EXPLICIT  # the attested service does get them
    key_body = "".join(got["TLS_KEY"].splitlines()[1:-1]).encode()
    needles = {
        "ascii secret": _forms(got["API_PASSWORD"].encode()),
        "binary secret": _forms(bytes.fromhex(got["RAW"])),
        "explicit secret": _forms(EXPLICIT.encode()),
        "private key": {key_body[10:60], key_body[-60:-10]},
        "master key": _forms(cas.files.master_key.read_bytes()),
    }
    for field in dataclasses.fields(keys := load_keyring(cas.files)):
        value = getattr(keys, field.name)
        if isinstance(value, bytes) and len(value) == 32:  # the keys derived from the master key
            needles[f"derived key {field.name}"] = _forms(value)

    # a wrong update that carries the explicit value where it does not belong
    bad = tmp_path / "bad.yaml"
    wrong = _hygiene_doc()
    wrong["secrets"] = {"name": "api", "kind": "explicit", "value": EXPLICIT}
    YAML().dump(wrong, bad)
    run("session", "check", "-f", str(bad))
    with cas.client(tmp_path / "id") as alice:
        r = alice.http().post(f"/v1/namespaces/{ns}-2/sessions", json=wrong)
        assert r.status_code == 422
        responses.append(("422 of a wrong document", r.text))

    audit = veil("cas", "audit", "verify", "--state-dir", str(cas.files.root), "--db", cas.db_url)
    assert audit.returncode == 0, audit.stderr
    outputs.append(("cas audit verify", audit.stdout + audit.stderr))

    for what, text in outputs + responses:
        _assert_clean(what, text.encode(), needles)
    _assert_clean("CAS log", cas.log.read_bytes(), needles)
    db_files = sorted(cas.files.root.glob("cas.db*"))
    assert db_files, "the SQLite database was not where expected"
    for path in db_files:
        _assert_clean(path.name, path.read_bytes(), needles)


@pytest.mark.parametrize(
    "secrets",
    [
        {"name": "api", "kind": "explicit", "value": EXPLICIT},  # a mapping, not a list
        [f"api={EXPLICIT}"],
        [{"name": "api", "kind": "ascii", "value": EXPLICIT}],
        [{"name": "api", "kind": "explicit", "value": [EXPLICIT]}],
        [{"name": "api", "kind": "explicit", "value": EXPLICIT, "typo": 1}],
    ],
)
def test_validation_errors_never_echo_values(secrets: Any) -> None:
    doc = {**session("v"), "secrets": secrets}
    doc["services"][0]["environment"] = {"PASSWORD": [EXPLICIT]}
    with pytest.raises(ManifestError) as err:
        session_from_data(doc, file="s.yaml")
    text = str(err.value) + repr([dataclasses.asdict(p) for p in err.value.problems])
    assert EXPLICIT not in text
    assert "secrets" in text or "environment" in text


def test_yaml_errors_do_not_quote_the_document() -> None:
    text = f"version: '0.3'\nname: s\nsecrets:\n  - {{name: a, kind: explicit, value: {EXPLICIT}\n"
    with pytest.raises(ManifestError) as err:
        load_session(text, file="s.yaml")
    assert "not valid YAML" in str(err.value.problems[0].message)
    assert EXPLICIT not in str(err.value) + repr(err.value.problems)


def test_formats_that_do_not_apply_refuse_without_the_value(
    cas: CasServer, tmp_path: Path
) -> None:
    """An explicit value that looks like a broken PEM, asked for as a key or a certificate."""
    pem = f"-----BEGIN PRIVATE KEY-----\n{EXPLICIT}\n-----END PRIVATE KEY-----\n"
    ns = "fmt-" + uuid.uuid4().hex[:8]
    launcher = Launcher(cas.addr, cas.files.cert.read_bytes())
    with cas.client(tmp_path / "id") as alice:
        for fmt in ("key", "crt", "publickey", "chain"):
            doc = session(f"f{fmt}")
            doc["secrets"].append({"name": "pem", "kind": "explicit", "value": pem})
            doc["services"][0]["environment"]["K"] = f"$$SCONE::pem:{fmt}$$"
            r = alice.http().post(f"/v1/namespaces/{ns}/sessions", json=doc)
            assert r.status_code in (201, 422), r.text
            if r.status_code == 201:
                r = launcher.attest(f"{ns}/f{fmt}/app", M1)
                assert r.status_code == 409, r.text
            assert "does not apply" in r.text or "format" in r.text
            assert EXPLICIT not in r.text
    launcher.close()
    assert EXPLICIT not in cas.log.read_text(errors="replace")
