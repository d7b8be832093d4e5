"""Sizing a tool result without writing its JSON again for each part (agent19.json_sizes, issue 20): the size a
summary is cut to must be the one the client receives, whatever the values."""

from __future__ import annotations

import enum
import json
import random

from agent19.json_sizes import Sizes, json_size
from agent19.responses import _cut_texts, _summary


def _written(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


LEAVES: list[object] = [
    None, True, False, 0, -12, 10**30, 1.5, 1e-7, 1e16, -0.0, float("nan"), float("inf"), float("-inf"),
    "", "plain", "é" * 7, 'a\nb\t\x01"\\/', "€😀", "\u2028\x7f", "\ud800", Colour.RED, Level.HIGH, (1, "two"),
]


def _value(rnd: random.Random, depth: int = 0) -> object:
    roll = rnd.random()
    if depth > 3 or roll < 0.4:
        return rnd.choice(LEAVES)
    if roll < 0.7:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 6))]
    keys: list[object] = ["k", "ké", 'q"', 1, 2.5, True, None, ""]
    return {rnd.choice(keys): _value(rnd, depth + 1) for _ in range(rnd.randint(0, 6))}


def test_a_size_is_the_length_of_the_json_written_for_every_kind_of_value():
    """Measured from its parts, a dict or list has the length json.dumps writes: floats (NaN, exponents), escapes,
    characters beyond ASCII, keys that are not strings, enum members, tuples, empty containers."""
    rnd = random.Random(20)
    for _ in range(2000):
        value = _value(rnd)
        assert Sizes()(value) == _written(value) == json_size(value), value


def test_whether_a_value_fits_a_limit_is_answered_exactly_and_remembered_only_when_measured_whole():
    """A summary asks first whether a result fits its budget (agent19.responses.shape): the answer is the size when
    it is at most the limit, None when it is over (whatever the limit, also negative), and a value measured whole
    on the way keeps its size for the questions that follow."""
    rnd = random.Random(24)
    for _ in range(2000):
        value = _value(rnd)
        whole = _written(value)
        for limit in (-1, 0, 1, whole - 1, whole, whole + 1, rnd.randint(0, whole + 5)):
            sizes = Sizes()
            assert sizes.at_most(value, limit) == (whole if whole <= limit else None), (value, limit)
            assert sizes(value) == whole and sizes.at_most(value, limit) == (whole if whole <= limit else None)


def test_parts_measured_with_the_whole_keep_their_sizes_and_a_cut_copy_is_measured_afresh():
    """Shortening asks for the whole, then for its parts, then for a copy with long texts cut that shares the parts
    nothing was cut in: every answer is the length of that object's own JSON."""
    data = {"operations": [{"sql": "x" * 300, "n": i, "risk": "low"} for i in range(5)],
            "summary": {"text": "short", "counts": [1, 2, 3]}, "notes": ["n" * 500, "ok"]}
    sizes = Sizes()
    assert sizes(data) == _written(data)
    for part in (data["operations"], data["operations"][2], data["summary"], data["notes"]):
        assert sizes(part) == _written(part)
    cut: list[str] = []
    short = _cut_texts(data, cut)
    assert cut and sizes(short) == _written(short) < _written(data)
    assert sizes(short["operations"][1]) == _written(short["operations"][1])
    assert short["summary"] == data["summary"] and sizes(short["summary"]) == _written(data["summary"])


def test_a_resource_link_describes_a_large_part_by_its_first_line_with_something_to_say():
    """The first line is found in a large body however its lines end, also where one ends across the first
    characters read (a "\\r\\n" split between them)."""
    for lead in (0, 4080, 4085, 4094, 4095, 4096, 4097):
        for ending in ("\n", "\r\n", "\r", "\u2028"):
            body = "#  \n" + " " * lead + ending + "{\n" + "## First real line" + ending + "y" * 9000
            assert _summary("text", body) == f"text: {len(body):,} characters — First real line"
            blank = "\n" * lead + "[" + ending + " # " * 3000
            assert _summary("text", blank) == f"text: {len(blank):,} characters"
    assert _summary("full", '{\n "id": 1\n}') == "full: 12 characters"
