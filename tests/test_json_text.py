"""agent19.json_text writes a record's JSON without pydantic, as pydantic writes it (model_dump_json(indent=2)):
what `agent19 lint --format json` printed before lint stopped importing pydantic. Compared here with pydantic's own
writer (agent19.records.dump_json) on the shapes records take."""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from dataclasses import dataclass, field
from enum import Enum, IntEnum

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


class Size(IntEnum):
    LARGE = 3


class Mode(str, Enum):  # noqa: UP042  # an enum that is a str too (pydantic writes its value)
    FAST = "fast"


class Name(str):
    def __str__(self) -> str:  # pydantic writes the characters, not this
        return "not the text"


class Count(int):
    def __repr__(self) -> str:  # pydantic writes the number, not this
        return "not the number"


@dataclass
class Nothing:
    hidden: str = field(default="x", metadata={"exclude": True})


@dataclass
class Typed:
    """Annotations naming the kinds the compiled writer writes inline; the tests put other values in them too."""

    flag: bool = True
    number: int = 0
    names: list[str] = field(default_factory=list)
    text: str | None = None
    anything: object = None
    records: list[Inner] = field(default_factory=list)


def _pydantics(value: object) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a value its annotation does not name: pydantic warns, then writes it
        return records.dump_json(value)


ODD_VALUES = [
    None, True, False, 0, -1, 2**64, -(2**100), "", "naïve 表 😀 \x00 \x1f \x7f \u2028", Colour.RED, Size.LARGE,
    Mode.FAST, Name("raw"), Count(7), [], {}, (), ("a", 1), [None, True, 3, "s", [], {}, [[]]],
    {"k": None, "": [], "n": {"m": {}}}, {True: "bool key", False: 0},
    {1: "int key", Colour.RED: "enum key", Size.LARGE: 1, Mode.FAST: 2, Name("key"): 3, None: 4, -5: 5},
    {0.1: "a float key is text", 1e20: 1, -0.0: 2, 1e-7: 3, float("nan"): 4, float("inf"): 5, float("-inf"): 6},
    Inner(name="x", tags=["a"], counts={"z": -1}), [Inner(name="a"), [Inner(name="b")], {"in": Inner(name="c")}],
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_odd_values_are_written_as_pydantic_writes_them(value: object) -> None:
    for record in (Typed(anything=value), Typed(anything=[{"v": value}, Typed(anything=value)], records=[
            Inner(name="n")])):
        assert json_text.write(record) == _pydantics(record)


@pytest.mark.parametrize("value", [*ODD_VALUES, Nothing(), [Nothing(), Nothing()]], ids=repr)
@pytest.mark.parametrize("where", ["flag", "number", "names", "text", "records"])
def test_a_value_its_annotation_does_not_name_is_written_as_anywhere_else(value: object, where: str) -> None:
    """Each field's writer is compiled with a fast path for the kind its annotation names (a bool, an int, a list,
    a str or None); a value of another kind in it is written as the same value is in a dict."""
    record = Typed(**{where: value})
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    assert json_text.write(record) == json_text.write(fields)
    assert json_text.write([record], level=1) == json_text.write([fields], level=1)


def test_the_same_record_is_written_at_every_depth() -> None:
    """A record class's writer is compiled per depth (its indentation is in it): the same class directly, in a
    list, in a list in a dict, and at a level given to write."""
    leaf = Inner(name="leaf", tags=["t"], counts={"c": 1})
    value = Typed(anything={"deep": [leaf, [leaf]]}, records=[leaf, leaf], names=["x", "y"])
    for record in (leaf, value, Typed(anything=leaf), Typed(records=[Inner(name=n) for n in "abc"])):
        written = json_text.write(record)
        assert written == _pydantics(record)
        for level in (1, 3):
            assert json_text.write(record, level=level) == written.replace("\n", "\n" + "  " * level)
    assert json_text.write(value, indent=4) == json.dumps(json.loads(_pydantics(value)), indent=4, ensure_ascii=False)


def test_random_records_are_written_as_pydantic_writes_them() -> None:
    """Seeded random records, every kind of value nested in them, compared with pydantic's text."""
    rng = random.Random(20)
    texts = ["", "a", "é", "\n", '"', "\\", "\x01", "😀", "\u2029", "plain text", Name("n"), Mode.FAST]

    def value(depth: int) -> object:
        kinds = [lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-(2**70), 2**70),
                 lambda: rng.choice(texts), lambda: rng.choice([Colour.RED, Size.LARGE, Count(-3)])]
        if depth < 3:
            kinds += [lambda: [value(depth + 1) for _ in range(rng.randint(0, 3))],
                      lambda: {rng.choice([*texts, 1, True, Colour.RED]): value(depth + 1)
                               for _ in range(rng.randint(0, 3))},
                      lambda: record(depth + 1)]
        return rng.choice(kinds)()

    def record(depth: int) -> object:
        if rng.random() < 0.5:
            return Typed(flag=rng.random() < 0.5, number=rng.choice([0, -7, 2**80, Count(2), Size.LARGE]),
                         names=[rng.choice(texts) for _ in range(rng.randint(0, 3))],
                         text=rng.choice([None, *texts]), anything=value(depth),
                         records=[Inner(name=rng.choice(texts))] * rng.randint(0, 2))
        return Inner(name=rng.choice(texts), tags=[rng.choice(texts) for _ in range(rng.randint(0, 2))],
                     counts={rng.choice(texts): rng.randint(-9, 9) for _ in range(rng.randint(0, 2))})

    for _ in range(300):
        r = record(0)
        assert json_text.write(r) == _pydantics(r), r


def test_a_float_anywhere_is_refused() -> None:
    for record in (Typed(text=1.5), Typed(number=1.5), Typed(names=[1.5]), Typed(flag=1.5),  # type: ignore[arg-type]
                   Typed(records=[Inner(name=0.5)]), Typed(anything={"k": [1e20]})):  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="float"):
            json_text.write(record)


@pytest.mark.parametrize("name", ["class", "ℌ", "a\n    print('injected')\n    x = v.a", "with space", "v"])
def test_a_field_named_anything_is_read_by_its_name_and_never_run(name: str, capsys: pytest.CaptureFixture) -> None:
    """A record's writer is compiled from its fields' names; a name is any string the class's annotations hold — a
    keyword, a letter Python folds (ℌ reads as H), a line of code. Each is read as the field it names, as pydantic
    reads it, and nothing in it runs."""
    cls = dataclass(init=False, repr=False, eq=False)(type("Odd", (), {"__annotations__": {name: int, "a": int},
                                                                       "a": 0}))
    record = cls()
    setattr(record, name, 1)
    assert json_text.write(record) == _pydantics(record)
    assert json.loads(json_text.write(record)) == {name: 1, "a": 0}
    assert "injected" not in capsys.readouterr().out
