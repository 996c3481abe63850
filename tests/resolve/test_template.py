from __future__ import annotations

import pytest

from veil.resolve.template import TemplateError, render, variables_of


@pytest.mark.parametrize("text,expected", [
    ("{{a}}", "1"),
    ("{{ missing | default(value=\"x\") }}", "x"),
    ("{{ missing | default(\"y\") }}", "y"),
    ("{{ a | default(value=\"x\") }}", "1"),
    ("plain $$SCONE::s$$", "plain $$SCONE::s$$"),
    ("{{a}}\n", "1\n"),
])
def test_render(text: str, expected: str) -> None:
    assert render(text, {"a": "1"}) == expected


def test_undefined_is_an_error_never_empty() -> None:
    with pytest.raises(TemplateError) as info:
        render("x{{nope}}y", {})
    assert info.value.names == ("nope",)


def test_sandbox_refuses_attribute_escape() -> None:
    with pytest.raises(TemplateError):
        render("{{ a.__class__.__mro__ }}", {"a": "1"})


def test_variables_of() -> None:
    assert variables_of("{{a}} {{ b | default(value='x') }}") == {"a", "b"}
