"""pydantic's internal prefixes ("Value error, ", "Assertion failed, ") never reach the user."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from veil.errors import ManifestError
from veil.manifest.load import load_document
from veil.manifest.problems import INTERNAL_PREFIXES, clean_message, describe_error


class _Listener(BaseModel):
    port: int
    name: str

    @field_validator("port")
    @classmethod
    def _in_range(cls, v: int) -> int:
        if v > 65535:
            raise ValueError(f"port {v} is above 65535")
        return v

    @field_validator("name")
    @classmethod
    def _lower(cls, v: str) -> str:
        if not v.islower():
            # what an `assert` in a validator raises (pytest would rewrite a bare assert here)
            raise AssertionError(f"name {v!r} must be lower case")
        return v


def _errors(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        _Listener.model_validate(data)
    return {str(e["loc"][0]): e for e in info.value.errors()}


def test_validator_messages_read_without_pydantics_prefix() -> None:
    errs = _errors({"port": 70000, "name": "Web"})
    # pydantic itself adds the prefixes; if it stops, this test says so rather than passing idly
    assert errs["port"]["msg"] == "Value error, port 70000 is above 65535"
    assert errs["name"]["msg"] == "Assertion failed, name 'Web' must be lower case"
    assert describe_error(_Listener, ("port",), errs["port"])[0] == "port 70000 is above 65535"
    assert describe_error(_Listener, ("name",), errs["name"])[0] == "name 'Web' must be lower case"


@pytest.mark.parametrize(("raw", "clean"), [
    ("Value error, x is bad", "x is bad"),
    ("Assertion failed, x is bad", "x is bad"),
    ("value error, x", "value error, x"),  # only pydantic's exact spelling is machinery
    ("the Value error, inside", "the Value error, inside"),
    ("Value error, Value error, twice", "Value error, twice"),  # one prefix, stripped once
])
def test_clean_message(raw: str, clean: str) -> None:
    assert clean_message(raw) == clean


SERVICE_WITHOUT_COMMAND = """\
apiVersion: scone/5.8
kind: genservice
build:
  name: app
  kind: python
  to: 127.0.0.1:5000/app:1
"""


def test_a_model_validator_message_in_a_real_manifest() -> None:
    with pytest.raises(ManifestError) as info:
        load_document("svc.yaml", SERVICE_WITHOUT_COMMAND)
    messages = [p.message for p in info.value.problems]
    assert messages == ["build.command is required (unless build.wrap names a wrapper)"]
    assert not any(m.startswith(INTERNAL_PREFIXES) for m in messages)
