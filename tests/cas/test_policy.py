"""The session document model: validation with places, and the hash."""

from __future__ import annotations

import pytest

from tests.cas.helpers import session
from veil.errors import ManifestError
from veil.session.load import load_session, session_from_data
from veil.session.model import SessionDoc, session_hash

BAD = """\
version: "0.3"
name: hello
services:
  - name: app
    command: python3 x.py
    environment: {PW: "$$SCONE::nope$$"}
    attestation: {measurement: [short]}
secrets:
  - {name: ca, kind: x509, issuer: missing}
  - {name: pw, kind: ascii, size: -1}
images:
  - name: img
    injection_files: [{path: relative, content: x}]
"""


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(ManifestError) as err:
        load_session(BAD, "s.yaml")
    rendered = err.value.render()
    assert "s.yaml:7" in rendered and "measurement" in rendered
    assert "s.yaml:10" in rendered and "size" in rendered
    assert "s.yaml:13" in rendered and "path" in rendered
    assert len(err.value.problems) == 3  # type errors first; cross-references need a valid doc


def test_cross_references_are_checked() -> None:
    text = BAD.replace("[short]", "[" + "a" * 64 + "]").replace("-1", "4").replace("relative", "/r")
    with pytest.raises(ManifestError) as err:
        load_session(text, "s.yaml")
    msgs = [(p.path, p.line) for p in err.value.problems]
    assert ("services[0].environment.PW", 6) in msgs
    assert ("secrets[0].issuer", 9) in msgs


def test_explicit_value_never_shown_in_errors() -> None:
    doc = session()
    doc["secrets"].append({"name": "x", "kind": "ascii", "value": "TOPSECRET"})
    with pytest.raises(ManifestError) as err:
        session_from_data(doc)
    assert "TOPSECRET" not in err.value.render()


def test_hash_is_canonical_and_chains() -> None:
    a = SessionDoc.model_validate(session())
    b = SessionDoc.model_validate(dict(reversed(list(session().items()))))
    assert session_hash(a) == session_hash(b)
    c = SessionDoc.model_validate(session(predecessor=session_hash(a)))
    assert session_hash(c) != session_hash(a)
    changed = session()
    changed["services"][0]["pwd"] = "/other"
    assert session_hash(SessionDoc.model_validate(changed)) != session_hash(a)


def test_yaml_forms() -> None:
    text = (
        "version: 0.3\nname: s\nservices: [{name: a, command: x, environment: {N: 3, B: true}}]\n"
        "secrets: [{name: c, kind: x509-ca, valid_for: 90d, export: [other/s2]}]\n"
        "images: [{name: i, injection_files: [{path: /f, mode: 0640}, {path: /g, mode: 0o640},"
        " {path: /h, mode: '0640'}, {path: /k, mode: 0600}]}]\n"
    )
    doc = load_session(text)
    assert doc.services[0].environment == {"N": "3", "B": "true"}
    assert doc.secrets[0].valid_for == 90
    assert doc.secrets[0].export[0].namespace == "other"
    # a YAML octal is the file mode written, exactly (never the decimal digits of its value)
    assert [f.mode for f in doc.images[0].injection_files] == ["0640", "0640", "0640", "0600"]
    assert doc.security.attestation.mode == "production"
    assert not doc.security.attestation.allows_simulation
