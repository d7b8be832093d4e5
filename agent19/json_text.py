"""JSON text of records (dataclasses of strings, numbers, lists and dicts) as pydantic writes it —
``model_dump_json(indent=2)``: keys in field order, two-space indentation, non-ASCII written as is, control
characters escaped (``\\n``, ``\\u001f``) — without importing pydantic, for a command that only writes JSON
(``agent19 lint --format json``). Field metadata is honoured as pydantic reads it: ``alias`` names the key,
``exclude`` leaves the field out."""

from __future__ import annotations

import dataclasses
from enum import Enum
from json.encoder import encode_basestring  # json's C encoder: escapes exactly the characters pydantic escapes
from typing import Any

_KEYS: dict[type, tuple[tuple[str, str], ...]] = {}
"""A dataclass → its written fields: (attribute, the key's JSON text with its ``": "``)."""


def _keys(cls: type) -> tuple[tuple[str, str], ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cannot write a {cls.__name__} as JSON")
    keys = tuple((f.name, encode_basestring(f.metadata.get("alias") or f.name) + ": ")
                 for f in dataclasses.fields(cls) if not f.metadata.get("exclude"))
    _KEYS[cls] = keys
    return keys


def write(value: Any, indent: int = 2, level: int = 0) -> str:
    """``value``'s JSON text, indented by ``indent`` spaces a level, its inner lines as at depth ``level`` (a value
    written inside another's text: ``write(x, level=1)`` is ``write(x).replace("\\n", "\\n  ")``)."""
    t = type(value)
    if t is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return int.__repr__(value)
    inner = "\n" + " " * (indent * (level + 1))
    if t is list or t is tuple:
        if not value:
            return "[]"
        return "[" + ",".join(inner + write(v, indent, level + 1) for v in value) + inner[:-indent] + "]"
    if t is dict:
        if not value:
            return "{}"
        return "{" + ",".join(inner + encode_basestring(str(k)) + ": " + write(v, indent, level + 1)
                              for k, v in value.items()) + inner[:-indent] + "}"
    if isinstance(value, Enum):
        return write(value.value, indent, level)
    if isinstance(value, int | str):  # a subclass of either (bool has none)
        return write(int(value) if isinstance(value, int) else str(value), indent, level)
    keys = _KEYS.get(t) or _keys(t)  # no float: pydantic spells them its own way (1e20, not 1e+20)
    if not keys:
        return "{}"
    return "{" + ",".join(inner + key + write(getattr(value, name), indent, level + 1)
                          for name, key in keys) + inner[:-indent] + "}"
