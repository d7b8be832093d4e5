"""`--format json` is JSON a strict parser accepts, even when a measured value is NaN or infinite."""

from __future__ import annotations

import json

from pydantic import BaseModel

from agent19.tools.registry import ToolSpec


class Measured(BaseModel):
    value: float
    values: list[float]
    label: str


def _strict(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_become_null_in_json_output() -> None:
    spec = ToolSpec(name="measure", title="t", description="d", args=BaseModel, result=Measured,
                    run=lambda ctx, args: Measured(value=0, values=[], label=""))
    out = spec.render(Measured(value=float("inf"), values=[float("nan"), 1.5, float("-inf")], label="ünïcode"),
                      "json")
    assert _strict(out) == {"value": None, "values": [None, 1.5, None], "label": "ünïcode"}
