"""Does ``ALTER COLUMN … TYPE`` keep every value? A small table of lossless conversions.

Knowledge is data: :data:`WIDENING` lists which type may become which without losing a value;
modifiers (lengths, precision, interval fields) are compared separately. Anything not known to be
lossless is treated as possibly lossy — the safe direction for a guard. The types compared are the
scalar types the server converts (a domain's base type, an array's element type:
:mod:`agent19.safety.type_facts`); :func:`from_type_name` reads a name as written, for a check
without a database, and takes any name outside ``pg_catalog`` for an unknown type.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

INT_DIGITS = {"int2": 5, "int4": 10, "int8": 19}
LENGTH_TYPES = {"varchar", "bpchar", "bit", "varbit"}
PRECISION_TYPES = {"timestamp", "timestamptz", "time", "timetz", "interval"}
TEXTUAL = {"text", "varchar", "bpchar"}

WIDENING: dict[str, set[str]] = {
    "int2": {"int4", "int8", "numeric", "float4", "float8", "text", "varchar"},
    "int4": {"int8", "numeric", "float8", "text", "varchar"},
    "int8": {"numeric", "text", "varchar"},
    "float4": {"float8", "text", "varchar"},
    "float8": {"text", "varchar"},
    "numeric": {"text", "varchar"},
    "date": {"timestamp", "timestamptz", "text", "varchar"},
    "timestamp": {"timestamptz", "text", "varchar"},
    "timestamptz": {"text", "varchar"},  # to timestamp: the instant becomes the session's wall time
    "varchar": {"text", "varchar", "bpchar"},
    "bpchar": {"text", "varchar", "bpchar"},
    "text": {"text", "varchar", "bpchar"},
    "bool": {"text", "varchar"},
    "uuid": {"text", "varchar"},
    "json": {"jsonb", "text", "varchar"},
    "jsonb": {"text", "varchar"},
    "cidr": {"inet", "text", "varchar"},
    "inet": {"text", "varchar"},
    "char": {"text", "varchar", "bpchar"},  # the one-byte internal "char"
    "name": {"text", "varchar"},
}
ALIASES = {"integer": "int4", "int": "int4", "bigint": "int8", "smallint": "int2", "real": "float4",
           "float": "float8", "decimal": "numeric", "boolean": "bool", "character": "bpchar"}
"""SQL spellings the grammar does not already turn into ``pg_catalog.<typname>`` (``char`` unquoted becomes
``pg_catalog.bpchar``; a quoted ``"char"`` is the internal one-byte type and stays ``char``)."""
INTERVAL_FULL_RANGE = 0x7FFF
INTERVAL_LEVELS = ((1 << 12, 0), (1 << 11, 1), (1 << 10, 2), (1 << 3, 3), (1 << 1, 4), (1 << 2, 5))
"""An interval's field mask → what a value keeps: SECOND (0: everything), MINUTE, HOUR, DAY, MONTH, YEAR (5: only
whole years) — the smallest field named decides (``AdjustIntervalForTypmod``)."""


@dataclass(frozen=True)
class SqlType:
    name: str
    """``pg_type.typname`` spelling: int4, varchar, numeric…"""
    length: int | None = None
    """varchar/bpchar/bit length, or timestamp/time precision; None: unbounded/default."""
    precision: int | None = None
    scale: int | None = None
    fields: int | None = None
    """An interval's field mask (``interval DAY``: 1 << 3); None: every field."""
    array: bool = False
    """The values are arrays of this type (the modifiers are the elements')."""


def from_catalog(type_name: str, typmod: int) -> SqlType:
    """A column's type from ``pg_type.typname`` and ``pg_attribute.atttypmod``."""
    if typmod < 0:
        return SqlType(type_name)
    if type_name == "numeric":
        return SqlType(type_name, precision=((typmod - 4) >> 16) & 0xFFFF, scale=(typmod - 4) & 0xFFFF)
    if type_name in LENGTH_TYPES:
        return SqlType(type_name, length=typmod - (4 if type_name in {"varchar", "bpchar"} else 0))
    if type_name in PRECISION_TYPES:
        if type_name == "interval":
            precision, fields = typmod & 0xFFFF, (typmod >> 16) & 0x7FFF
            return SqlType(type_name, length=None if precision == 0xFFFF else precision,
                           fields=None if fields == INTERVAL_FULL_RANGE else fields)
        return SqlType(type_name, length=typmod)
    return SqlType(type_name)


def from_type_name(node: dict[str, Any]) -> SqlType:
    """A type from a pglast ``TypeName`` node (``varchar(10)``, ``numeric(8,2)``…)."""
    names = [n.get("String", {}).get("sval", "") for n in node.get("names", [])]
    name = names[-1] if names else ""
    if len(names) > 1 and names[0] != "pg_catalog":
        name = ".".join(names)  # a user's type (maybe a domain named like a built-in): unknown here
    name = ALIASES.get(name, name)
    # pglast leaves a zero out of its JSON ({"ival": {}} is time(0)); a modifier that is no integer is not read
    mods = [m["A_Const"]["ival"].get("ival", 0) for m in node.get("typmods", []) if "ival" in m.get("A_Const", {})]
    if node.get("arrayBounds"):
        return SqlType(name + "[]")
    if name == "interval" and mods:
        return SqlType(name, length=mods[1] if len(mods) > 1 else None,
                       fields=None if mods[0] == INTERVAL_FULL_RANGE else mods[0])
    if name == "numeric" and mods:
        return SqlType(name, precision=mods[0], scale=mods[1] if len(mods) > 1 else 0)
    if name in LENGTH_TYPES | PRECISION_TYPES and mods:
        return SqlType(name, length=mods[0])
    return SqlType(name)


def _fits(old: int | None, new: int | None) -> bool:
    """A modifier limit ``new`` holds every value of limit ``old`` (None: unbounded)."""
    return new is None or (old is not None and new >= old)


def loses_data(old: SqlType, new: SqlType) -> bool:
    """True when converting ``old`` values to ``new`` can truncate, round or fail on some value."""
    if new.name == "text" and not new.array:
        return False  # every value has a text form (an array's too), read back as the same value
    if old.array or new.array:
        return old.array != new.array or loses_data(replace(old, array=False), replace(new, array=False))
    if new.name in PRECISION_TYPES and old.name in PRECISION_TYPES and new.length is not None:
        if not _fits(old.length if old.length is not None else 6, new.length):
            return True  # fractional seconds rounded away
    if new.name == "interval" and _interval_level(new.fields) > _interval_level(old.fields):
        return True  # interval DAY keeps days only: hours, minutes and seconds of every value are gone
    if old.name == new.name or (old.name in TEXTUAL and new.name in TEXTUAL):
        if new.name == "numeric":
            if new.precision is None:
                return False
            if old.precision is None:
                return True
            return not (new.precision - new.scale >= old.precision - old.scale and new.scale >= old.scale)
        if new.name in PRECISION_TYPES:
            return not _fits(old.length if old.length is not None else 6, new.length)
        if new.name in TEXTUAL:
            return not _fits(old.length if old.name != "text" else None, new.length)
        return not _fits(old.length, new.length)
    if new.name not in WIDENING.get(old.name, set()):
        return True
    if new.name == "numeric" and new.precision is not None:
        if old.name in INT_DIGITS:
            return new.precision - (new.scale or 0) < INT_DIGITS[old.name]
        return True
    if new.name in {"varchar", "bpchar"} and new.length is not None:
        return True  # a bounded text form of a number or date may not fit
    return False


def _interval_level(fields: int | None) -> int:
    """How much of an interval value a field mask drops: 0 nothing, 5 all but whole years (None: every field)."""
    if fields is None or fields == INTERVAL_FULL_RANGE:
        return 0
    return next((level for bit, level in INTERVAL_LEVELS if fields & bit), 0)


def describe(t: SqlType) -> str:
    if t.precision is not None:
        return f"{t.name}({t.precision},{t.scale or 0})"
    text = f"{t.name}({t.length})" if t.length is not None else t.name
    return text + ("[]" if t.array else "")
