"""JSON text of records (dataclasses of strings, numbers, lists and dicts) as pydantic writes it —
``model_dump_json(indent=2)``: keys in field order, two-space indentation, non-ASCII written as is, control
characters escaped (``\\n``, ``\\u001f``) — without importing pydantic, for a command that only writes JSON
(``agent19 lint --format json``). Field metadata is honoured as pydantic reads it: ``alias`` names the key,
``exclude`` leaves the field out.

Written by type, per depth (:class:`_Depth`): each depth keeps a table from a value's type to its writer, and a
dataclass's writer is Python compiled once per depth from its fields (its keys and indentation as constants, one
string built per record), so a large report — a 10,000-statement lint is 12 MB of JSON — is not written by a
generic walk value by value. The table is the only dispatch: any type a field holds is written as anywhere else."""

from __future__ import annotations

import dataclasses
import keyword
import math
from collections.abc import Callable
from enum import Enum
from json.encoder import encode_basestring  # json's C encoder: escapes exactly the characters pydantic escapes
from typing import Any

_Writer = Callable[[Any], str]


def write(value: Any, indent: int = 2, level: int = 0) -> str:
    """``value``'s JSON text, indented by ``indent`` spaces a level, its inner lines as at depth ``level`` (a value
    written inside another's text: ``write(x, level=1)`` is ``write(x).replace("\\n", "\\n  ")``)."""
    return _depth(indent, level).write(value)


def writer(indent: int = 2, level: int = 0) -> Callable[[Any], str]:
    """:func:`write` for ``indent`` and ``level``, looked up once: the writer of a report's many records."""
    return _depth(indent, level).write


_DEPTHS: dict[tuple[int, int], _Depth] = {}


def _depth(indent: int, level: int) -> _Depth:
    return _DEPTHS.get((indent, level)) or _DEPTHS.setdefault((indent, level), _Depth(indent, level))


def _null(value: None) -> str:
    return "null"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _key(key: Any) -> str:
    """A dict key's text as pydantic writes it: an enum by its value, a bool as JSON spells it, a str subclass by its
    characters, a NaN or infinite float as "None", anything else as ``str()`` gives it (ints, floats: a key is a
    string, not a JSON number)."""
    if isinstance(key, Enum):
        return _key(key.value)
    if type(key) is bool:
        return _bool(key)
    if isinstance(key, str):
        return str.__str__(key)  # the characters, not an overridden __str__
    if isinstance(key, float) and not math.isfinite(key):
        return "None"
    return str(key)


class _Depth:
    """Writers of values written at depth ``level`` (their inner lines one level deeper): ``table`` maps a type to
    its writer, filled for a type on its first value (:meth:`_writer`)."""

    def __init__(self, indent: int, level: int) -> None:
        self.indent, self.level = indent, level
        self.inner = "\n" + " " * (indent * (level + 1))
        self.close = "\n" + " " * (indent * level)
        self.table: dict[type, _Writer] = {
            str: encode_basestring, int: int.__repr__, bool: _bool, type(None): _null,
            list: self._list, tuple: self._list, dict: self._dict,
        }
        self._inside: _Depth | None = None

    @property
    def inside(self) -> _Depth:
        """The depth of this depth's values' members."""
        if self._inside is None:
            self._inside = _depth(self.indent, self.level + 1)
        return self._inside

    def write(self, value: Any) -> str:
        return (self.table.get(type(value)) or self._writer(type(value)))(value)

    def _writer(self, cls: type) -> _Writer:
        writer: _Writer
        if issubclass(cls, Enum):
            writer = self._enum
        elif issubclass(cls, int):  # a subclass (bool has none): its number, not an overridden __repr__
            writer = int.__repr__
        elif issubclass(cls, str):  # its characters (the C encoder reads them, not an overridden __str__)
            writer = encode_basestring
        elif dataclasses.is_dataclass(cls):
            writer = _compile(cls, self)
        else:  # no float: pydantic spells them its own way (1e20, not 1e+20)
            raise TypeError(f"cannot write a {cls.__name__} as JSON")
        self.table[cls] = writer
        return writer

    def _enum(self, value: Enum) -> str:
        return self.write(value.value)

    def _list(self, values: list[Any] | tuple[Any, ...]) -> str:
        if not values:
            return "[]"
        inside = self.inside
        get, other = inside.table.get, inside.write
        return ("[" + self.inner + ("," + self.inner).join([(get(type(v)) or other)(v) for v in values])
                + self.close + "]")

    def _dict(self, values: dict[Any, Any]) -> str:
        if not values:
            return "{}"
        inside = self.inside
        get, other = inside.table.get, inside.write
        return ("{" + self.inner + ("," + self.inner).join([
            encode_basestring(k if type(k) is str else _key(k)) + ": " + (get(type(v)) or other)(v)
            for k, v in values.items()]) + self.close + "}")


_FIRST = {
    "bool": "'true' if x is True else 'false' if x is False else {any}",
    "int": "int_text(x) if type(x) is int else {any}",
    "list": "(list_open + list_sep.join([(get_in(type(e)) or other_in)(e) for e in x]) + list_close if x else '[]')"
            " if type(x) is list else {any}",
    "": "enc(x) if type(x) is str else 'null' if x is None else {any}",
}
"""A field's expression by the kind its annotation names (:func:`_kind`): that kind's values written inline, any
other value — one the annotation did not foresee too — by the table (``{any}``); the text is the same either way."""


def _kind(annotation: Any) -> str:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    name = name.replace(" ", "")
    if name in ("bool", "int"):
        return name
    return "list" if name.startswith(("list[", "List[")) or name == "list" else ""


def _read(name: str) -> str:
    """The expression reading field ``name`` of record ``v``: an attribute when the name is plain ASCII and no keyword;
    else ``getattr`` with the name as a string constant. A field's name is any string a class's annotations hold (a
    keyword, ``ℌ``, which Python reads as ``H``, a line of code): never written into the source as it is."""
    if name.isascii() and name.isidentifier() and not keyword.iskeyword(name):
        return f"v.{name}"
    return f"getattr(v, {name!r})"


def _compile(cls: type, depth: _Depth) -> _Writer:
    """The writer of ``cls``'s records at ``depth``: one function reading each written field (``alias`` its key,
    ``exclude`` left out) and writing its value inline when it is of the kind the field's annotation names (a str or
    None by default), else by ``depth.inside``'s table; the text built as one f-string of the keys and indentation
    (constants here) and the values."""
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("exclude")]
    if not fields:
        return lambda value: "{}"
    lines, parts = [], []
    for i, f in enumerate(fields):
        first = _FIRST[_kind(f.type)].format(any="(get(type(x)) or other)(x)")
        lines.append(f"    x = {_read(f.name)}\n    a{i} = {first}\n")
        key = encode_basestring(f.metadata.get("alias") or f.name)
        parts.append(repr(("{" if i == 0 else ",") + depth.inner + key + ": ") + f" f'{{a{i}}}'")
    source = ("def make(enc, int_text, get, other, list_open, list_sep, list_close, get_in, other_in):\n"
              "  def write(v):\n" + "".join(lines)
              + "    return (" + " ".join(parts) + " " + repr(depth.close + "}") + ")\n  return write\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<json_text writer of {cls.__qualname__}>", "exec"), namespace)
    inside, members = depth.inside, depth.inside.inside  # a field's value; a list field's members
    writer: _Writer = namespace["make"](encode_basestring, int.__repr__, inside.table.get, inside.write,
                                        "[" + inside.inner, "," + inside.inner, inside.close + "]",
                                        members.table.get, members.write)
    return writer
