"""agent19.json_text writes a record's JSON without pydantic, as pydantic writes it (model_dump_json(indent=2)):
what `agent19 lint --format json` printed before lint stopped importing pydantic. Compared here with pydantic's own
writer (agent19.records.dump_json) on the shapes records take."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import pytest

from agent19 import json_text, records


class Colour(Enum):
    RED = "red"


@dataclass
class Inner:
    name: str
    tags: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Outer:
    title: str
    inner: list[Inner]
    nothing: None | str = None
    flag: bool = False
    number: int = -12
    colour: Colour = Colour.RED
    renamed: str = field(default="x", metadata={"alias": "shown_as"})
    hidden: str = field(default="secret", metadata={"exclude": True})
    empty: list[Inner] = field(default_factory=list)


TEXTS = ["plain", "naïve 表 😀", 'quote " backslash \\ slash /', "tab\t nl\n cr\r bell \x07 unit \x1f esc \x1b",
         "del \x7f nbsp \xa0 line sep \u2028 para \u2029", ""]


@pytest.mark.parametrize("text", TEXTS)
def test_the_text_is_pydantics(text: str) -> None:
    value = Outer(title=text, inner=[Inner(name=text, tags=[text, "b"], counts={text: 1, "z": 0}), Inner(name="e")],
                  renamed=text, hidden=text)
    written = json_text.write(value)
    assert written == records.dump_json(value)
    assert '"hidden"' not in written and '"shown_as"' in written
    assert json_text.write(value, level=2) == written.replace("\n", "\n    ")  # as nested at depth 2


def test_a_float_is_refused_rather_than_spelled_otherwise() -> None:
    with pytest.raises(TypeError, match="float"):
        json_text.write(Inner(name="n", counts={"x": 1.5}))  # type: ignore[dict-item]
