"""A customer's model, as plain as it gets: no web code, no Kafka code.

Two entrypoints, to show both shapes the wrappers accept:
- `model:predict`      a function, ready at once
- `model:Classifier`   a class: created once, `load()` once (the wrapper is ready after), then
                       `predict(payload)` per request or message
"""

from __future__ import annotations

import math


def predict(payload: dict) -> dict:
    """Return the sum and the mean of `payload["values"]`."""
    values = [float(v) for v in payload.get("values", [])]
    total = math.fsum(values)
    return {"sum": total, "mean": total / len(values) if values else None}


class Classifier:
    """Label a number as small or large; the threshold is 'loaded' once at start."""

    def __init__(self) -> None:
        self.threshold: float | None = None

    def load(self) -> None:
        self.threshold = 10.0

    def predict(self, payload: dict) -> dict:
        if self.threshold is None:
            raise RuntimeError("predict called before load")
        x = float(payload["x"])
        return {"label": "large" if x > self.threshold else "small", "x": x}
