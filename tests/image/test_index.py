"""The local index: round trip, and a damaged entry is an error that says what to do."""

from __future__ import annotations

import pytest

from veil.errors import OperationalError
from veil.image.index import IndexEntry, LocalIndex
from veil.manifest.description import ServiceDescription

DESC = ServiceDescription(
    name="svc", image="127.0.0.1:5000/x/svc:1", command="python3 a.py", argv=["python3", "a.py"],
    pwd="/app", manifest_digest="sha256:" + "0" * 64,
)


def test_round_trip() -> None:
    index = LocalIndex()
    index.put(IndexEntry(image=DESC.image, description=DESC, digest="sha256:" + "1" * 64))
    entry = index.get(DESC.image)
    assert entry is not None and entry.description == DESC
    assert [e.image for e in index.all()] == [DESC.image]


@pytest.mark.parametrize(
    "damage", ["{not json", '{"image": "x"}', '{"image": "x", "description": {"name": 1}}']
)
def test_damaged_entry_is_an_operational_error(damage: str) -> None:
    index = LocalIndex()
    index.put(IndexEntry(image=DESC.image, description=DESC))
    path = next(index.root.glob("*.json"))
    path.write_text(damage)
    with pytest.raises(OperationalError) as err:
        index.get(DESC.image)
    assert str(path) in err.value.message and "veil apply" in (err.value.hint or "")
