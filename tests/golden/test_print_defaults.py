"""Golden files of `--print-defaults`: byte-for-byte output, and the output is a fixpoint.

Each case under print-defaults/ holds input.yaml, expected.yaml and services/*.yaml (the service
manifests whose descriptions the mesh uses). VEIL_UPDATE_GOLDEN=1 rewrites expected.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from veil.manifest.description import ServiceDescription
from veil.manifest.load import load_genservice
from veil.resolve.defaults import print_defaults

CASES = Path(__file__).parent / "print-defaults"


def _descriptions(case: Path) -> dict[str, ServiceDescription]:
    out = {}
    for f in sorted((case / "services").glob("*.yaml")):
        d = ServiceDescription.from_genservice(load_genservice(f).model)
        out[d.image] = d
    return out


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden(case: str) -> None:
    d = CASES / case
    descriptions = _descriptions(d)
    got = print_defaults((d / "input.yaml").read_text(), "input.yaml", descriptions)
    expected = d / "expected.yaml"
    if os.environ.get("VEIL_UPDATE_GOLDEN") == "1":
        expected.write_text(got)
    assert got == expected.read_text()
    again = print_defaults(got, "expected.yaml", descriptions)
    assert again == got, "applying the output with --print-defaults again must change nothing"
