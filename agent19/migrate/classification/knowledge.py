"""What PostgreSQL does for each form of statement: the knowledge table's row type and lookups.

The rows themselves live in :mod:`agent19.migrate.classification.knowledge_table` (data, not code): one
:class:`Behaviour` per statement *form* (e.g. ``alter_table.add_column.volatile_default``) and
PostgreSQL version range. Classification (:mod:`agent19.migrate.classification.classify`) only *chooses* the
form from the statement's parse tree, the catalog and what earlier statements of the migration
did; everything it then says about locks, rewrites and transactions comes from the row.

Every row carries an ``example`` against ``tests/corpus/observed_schema.sql``;
``tests/test_knowledge_observed.py`` runs each example on PostgreSQL 15 and 16 and checks the
row's lock modes and rewrite flag against ``pg_locks`` and ``pg_class.relfilenode``.

This module also holds the two small bodies of catalog-free knowledge that choosing a form
needs: which functions are volatile (a volatile ``DEFAULT`` rewrites on ``ADD COLUMN``), and
which type changes are binary-coercible (no rewrite).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from agent19.migrate.classification.behaviour import Behaviour
from agent19.migrate.classification.knowledge_table import KNOWLEDGE


def _rows() -> tuple[Behaviour, ...]:
    return KNOWLEDGE


_BY_FORM: dict[str, list[Behaviour]] = {}
for _row in KNOWLEDGE:
    _BY_FORM.setdefault(_row.form, []).append(_row)
"""The table's rows by form, in table order (every statement's classification looks its form up)."""


def forms() -> list[str]:
    """Every statement form the table knows, in table order, each once."""
    return list(dict.fromkeys(row.form for row in _rows()))


def lookup(form: str, pg_version: int) -> Behaviour:
    """The row for ``form`` on ``pg_version`` (``110000``-style or a major like ``15``).

    When no row covers the version (e.g. ``REINDEX CONCURRENTLY`` on 11), the nearest row is
    returned and its note says which versions it applies to. Unknown forms raise ``KeyError``.
    """
    major = pg_version // 10000 if pg_version >= 1000 else pg_version
    rows = _BY_FORM.get(form)
    if not rows:
        raise KeyError(form)
    for row in rows:
        if row.versions[0] <= major <= row.versions[1]:
            return row
    nearest = min(rows, key=lambda r: min(abs(r.versions[0] - major), abs(r.versions[1] - major)))
    low, high = nearest.versions
    return Behaviour(**{**nearest.__dict__, "note": f"{nearest.note} (not available on PostgreSQL {major}: "
                                                     f"this form needs {low}-{high})"})


# --- volatility ---------------------------------------------------------------------------------

VOLATILE_FUNCTIONS = frozenset({
    "random", "random_normal", "clock_timestamp", "timeofday", "statement_timestamp_volatile",
    "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "uuidv4", "uuidv7",
    "nextval", "setval", "currval", "lastval", "txid_current", "pg_current_xact_id", "gen_random_bytes",
    "gen_salt", "crypt", "pg_sleep", "dblink", "set_config",
})
"""Built-in and common extension functions marked VOLATILE: a DEFAULT calling one is evaluated
per row, so ``ADD COLUMN … DEFAULT f()`` rewrites the table."""

NON_VOLATILE_FUNCTIONS = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_date", "current_timestamp",
    "localtimestamp", "current_setting", "lower", "upper", "btrim", "trim", "ltrim", "rtrim", "length",
    "concat", "concat_ws", "format", "substr", "substring", "replace", "coalesce", "nullif", "greatest",
    "least", "abs", "round", "floor", "ceil", "to_char", "to_date", "to_timestamp", "to_number",
    "make_date", "make_interval", "make_timestamp", "make_timestamptz", "date_trunc", "date_part",
    "jsonb_build_object", "json_build_object", "jsonb_build_array", "json_build_array", "to_jsonb",
    "to_json", "array_fill", "md5", "current_user", "session_user", "current_schema", "timezone",
    "int4", "int8", "text", "numeric", "array", "row", "pg_catalog.now",
})
"""Immutable or stable functions (evaluated once for ``ADD COLUMN``: a fast default from 11)."""


def default_volatility(functions: set[str]) -> tuple[bool, str]:
    """Whether a DEFAULT calling ``functions`` is volatile, and why (for the notes).

    A function in neither list is assumed volatile: CREATE FUNCTION's default volatility is
    VOLATILE, so an unknown function rewrites unless declared otherwise.
    """
    known = sorted(f for f in functions if f.lower() in VOLATILE_FUNCTIONS)
    if known:
        return True, f"{', '.join(known)}() is volatile: evaluated once per row"
    unknown = sorted(f for f in functions if f.lower() not in NON_VOLATILE_FUNCTIONS)
    if unknown:
        return True, (f"{', '.join(unknown)}() is not a known stable/immutable function; assumed volatile "
                      "(CREATE FUNCTION's default) - check pg_proc.provolatile")
    return False, "the default is non-volatile: stored once in the catalog (fast default, PostgreSQL 11+)"


# --- types and binary coercibility --------------------------------------------------------------

_ALIASES = {
    "character varying": "varchar", "varchar": "varchar", "character": "bpchar", "char": "bpchar",
    "bpchar": "bpchar", "text": "text", "integer": "int4", "int": "int4", "int4": "int4", "bigint": "int8",
    "int8": "int8", "smallint": "int2", "int2": "int2", "numeric": "numeric", "decimal": "numeric",
    "bit varying": "varbit", "varbit": "varbit", "bit": "bit", "cidr": "cidr", "inet": "inet",
    "timestamp with time zone": "timestamptz", "timestamptz": "timestamptz",
    "timestamp without time zone": "timestamp", "timestamp": "timestamp", "boolean": "bool", "bool": "bool",
    "double precision": "float8", "float8": "float8", "real": "float4", "float4": "float4",
    "time without time zone": "time", "time": "time", "time with time zone": "timetz", "timetz": "timetz",
    "interval": "interval", "json": "json", "jsonb": "jsonb", "uuid": "uuid", "bytea": "bytea",
    "date": "date", "serial": "int4", "bigserial": "int8", "smallserial": "int2",
}


@dataclass(frozen=True)
class ColumnType:
    """A column type reduced to what coercibility rules need: base name, modifiers, array-ness."""

    base: str
    mods: tuple[int, ...] = ()
    array: bool = False

    def __str__(self) -> str:
        mods = f"({','.join(map(str, self.mods))})" if self.mods else ""
        return f"{self.base}{mods}{'[]' if self.array else ''}"


_FORMAT_TYPE = re.compile(r"^(?P<name>[^(\[]+)\s*(?:\((?P<mods>[\d,\s]+)\))?(?P<rest>.*?)(?P<array>(\[\])*)$")


@lru_cache(maxsize=1024)
def parse_format_type(text: str) -> ColumnType:
    """``format_type()`` output (the catalog's spelling) → :class:`ColumnType`.

    e.g. ``character varying(40)``, ``numeric(10,2)``, ``timestamp(3) with time zone``. Kept per text (a
    migration names a few types many times; a :class:`ColumnType` is immutable, so callers may share it).
    """
    m = _FORMAT_TYPE.match(text.strip())
    if not m:
        return ColumnType(text.strip().lower())
    name = (m["name"] + m["rest"]).strip().lower()
    name = re.sub(r"\s+", " ", name.replace('"', ""))
    name = name.rsplit(".", 1)[-1] if name.startswith("pg_catalog.") else name
    mods = tuple(int(x) for x in m["mods"].split(",")) if m["mods"] else ()
    return ColumnType(_ALIASES.get(name, name), mods, bool(m["array"]))


def rewrite_free_change(old: ColumnType, new: ColumnType, pg_major: int, session_utc: bool) -> str | None:
    """Why changing ``old`` to ``new`` needs no rewrite, or ``None`` when it rewrites the table.

    The cases are PostgreSQL's binary-coercible casts whose typmod change cannot invalidate a
    stored value (ATColumnChangeRequiresRewrite); all observed by the tests.
    """
    if old.array != new.array:
        return None
    if old == new:
        return "same type and modifiers: only the catalog changes"
    wider = not new.mods or (len(new.mods) == len(old.mods) and old.mods and new.mods[0] >= old.mods[0])
    if old.base == new.base == "varchar" and (not new.mods or (old.mods and wider)):
        return "varchar length increased (or removed): binary-coercible, existing values fit"
    if old.base == new.base == "varbit" and (not new.mods or (old.mods and wider)):
        return "bit varying length increased (or removed): binary-coercible"
    if old.base == "varchar" and new.base == "text":
        return "varchar -> text is binary-coercible"
    if old.base == "text" and new.base == "varchar" and not new.mods:
        return "text -> varchar without a length is binary-coercible"
    if old.base == new.base == "numeric":
        if not new.mods:
            return "numeric(p,s) -> unconstrained numeric: binary-coercible"
        old_scale = old.mods[1] if len(old.mods) > 1 else 0
        new_scale = new.mods[1] if len(new.mods) > 1 else 0
        if old.mods and new.mods[0] >= old.mods[0] and new_scale == old_scale:
            return "numeric precision increased with the same scale: binary-coercible"
        return None
    if old.base == "cidr" and new.base == "inet":
        return "cidr -> inet is binary-coercible"
    if old.base == new.base and old.base in ("timestamp", "timestamptz", "time", "timetz", "interval"):
        if not new.mods or (old.mods and new.mods[0] >= old.mods[0]):
            return f"{old.base} precision increased (or removed): no rounding, no rewrite"
        return None
    if {old.base, new.base} == {"timestamp", "timestamptz"}:
        if pg_major < 12:
            return None
        if not session_utc:
            return None
        if new.mods and (not old.mods or new.mods[0] < old.mods[0]):
            return None
        return f"{old.base} -> {new.base} with the session time zone UTC (PostgreSQL 12+): no rewrite"
    return None
