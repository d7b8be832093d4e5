"""Suggesting a checks file from what the database already says about its data.

From the catalog and ``pg_stats`` (the planner's statistics, gathered by ANALYZE), per table:

* a ``schema`` check pinning every column and its type (a retyped or dropped column fails);
* ``row_count`` fails when the table is empty;
* the primary key and each unique constraint become ``duplicate_count`` checks (they still hold if
  the constraint is dropped, or on a copy of the data without it);
* each foreign key becomes an ``orphans`` check;
* a nullable column whose null fraction is 0 becomes a ``missing_count`` check;
* a column with few distinct values, all of them in the most-common-values list, becomes an
  ``invalid_count`` check with those values allowed;
* a timestamp column whose default is the current time becomes a ``freshness`` check.

The file is YAML, each check preceded by a comment saying why it was suggested; review it before
committing it (it describes the data as it is now, not as it should be).
"""

from __future__ import annotations

import re
from typing import Any

from agent19.db.connection import Connection
from agent19.db.models import SchemaSnapshot, Table
from agent19.errors import InputError

MAX_ALLOWED_VALUES = 20
"""Columns with at most this many distinct values get an allowed-values check."""
FRESHNESS_DEFAULT = "> 1 day"
ENUMERABLE_TYPES = {"text", "character varying", "character", "smallint", "integer", "bigint", "\"char\"", "citext"}
NOT_ENUMERABLE_PREFIXES = ("timestamp", "date", "time", "interval", "numeric", "real", "double", "boolean", "json",
                           "bytea", "uuid", "tsvector", "point", "money", "inet", "cidr", "xml")
"""Enums and other user types are enumerable; times, measures, flags, documents and identifiers are not."""
_NOW = re.compile(r"\b(now\(\)|current_timestamp|clock_timestamp\(\)|statement_timestamp\(\)|"
                  r"transaction_timestamp\(\)|localtimestamp)", re.IGNORECASE)

Q_STATS = """
SELECT attname, null_frac, n_distinct, most_common_vals::text::text[] AS mcv, most_common_freqs AS mcf
  FROM pg_stats WHERE schemaname = %s AND tablename = %s
"""


def _stats(conn: Connection, table: Table) -> dict[str, dict[str, Any]]:
    rows = conn.execute(Q_STATS, (table.schema_name, table.name)).fetchall()
    return {r["attname"]: r for r in rows}


def suggest_table(conn: Connection, snap: SchemaSnapshot, table: Table) -> list[tuple[str, dict[str, Any]]]:
    """(why, check) pairs for one table."""
    out: list[tuple[str, dict[str, Any]]] = []
    stats = _stats(conn, table)
    out.append(("the columns and types as they are now", {
        "check": "schema", "columns": [c.name for c in table.columns],
        "types": {c.name: c.type for c in table.columns}}))
    out.append(("the table is not empty now", {"check": "row_count", "fail": "= 0"}))
    for con in table.constraints:
        if con.type in ("primary_key", "unique") and con.columns:
            kind = "primary key" if con.type == "primary_key" else "unique constraint"
            out.append((f"{kind} {con.name}", {"check": "duplicate_count", "columns": con.columns}))
    for con in table.constraints:
        if con.type == "foreign_key" and con.references_table and con.columns:
            out.append((f"foreign key {con.name}", {
                "check": "orphans", "columns": con.columns, "references_table": con.references_table,
                "references_columns": con.references_columns}))
    for col in table.columns:
        st = stats.get(col.name)
        if col.nullable and st is not None and st["null_frac"] == 0:
            out.append((f"{col.name} is nullable but no NULL was seen (pg_stats null_frac = 0)",
                        {"check": "missing_count", "column": col.name}))
        if st is not None and _enumerable(col.type) and st["mcv"] and len(st["mcv"]) <= MAX_ALLOWED_VALUES and \
                len(st["mcv"]) >= _distinct(st, table):
            covered = sum(st["mcf"] or []) + (st["null_frac"] or 0)
            if covered >= 0.999 and not _is_key(table, col.name):
                out.append((f"{col.name} has {len(st['mcv'])} distinct values (pg_stats), all listed",
                            {"check": "invalid_count", "column": col.name, "valid_values": sorted(st["mcv"])}))
        if col.type.startswith(("timestamp", "date")) and col.default and _NOW.search(col.default):
            out.append((f"{col.name} defaults to the current time ({col.default}); adjust the age to your load "
                        "schedule", {"check": "freshness", "column": col.name, "fail": FRESHNESS_DEFAULT}))
    return out


def _distinct(st: dict[str, Any], table: Table) -> float:
    """pg_stats.n_distinct as a count (negative values are a fraction of the rows)."""
    n = float(st["n_distinct"] or 0)
    return n if n >= 0 else -n * float(table.row_estimate or 0)


def _enumerable(type_name: str) -> bool:
    """Types whose few distinct values make a set of allowed values (not times, measures or documents)."""
    base = type_name.split("(")[0].strip()
    return base in ENUMERABLE_TYPES or not any(base.startswith(p) for p in NOT_ENUMERABLE_PREFIXES)


def _is_key(table: Table, column: str) -> bool:
    """Part of a key or a foreign key: uniqueness and orphan checks cover it, not allowed values."""
    return any(c.type in ("primary_key", "unique", "foreign_key") and column in c.columns for c in table.constraints)


def suggest(conn: Connection, snap: SchemaSnapshot, tables: list[str]) -> str:
    """A checks file (YAML text) for ``tables``; raises :class:`InputError` naming a table not found."""
    import yaml  # here: the MCP server declares data_quality without writing any checks file

    found: list[Table] = []
    for name in tables:
        table = snap.table(name)
        if table is None:
            raise InputError(f"table {name} not found", "give table or schema.table names that `agent19 describe` "
                             "lists")
        found.append(table)
    lines = ["# Suggested by `agent19 check --suggest` from the catalog and pg_stats: it describes the data as it",
             "# is now. Review it, then run it with `agent19 check FILE`.", "tables:"]
    for table in found:
        lines.append(f"  {_key(table, snap)}:")
        if table.row_estimate is None:
            lines.append("    # never analyzed: run ANALYZE for statistics-based suggestions (nulls, allowed values)")
        lines.append("    checks:")
        for why, check in suggest_table(conn, snap, table):
            # names and defaults come from the catalog: a line break in one would end the comment and inject YAML
            lines.append(f"      # {' '.join(why.splitlines())}")
            dumped = yaml.safe_dump([check], sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
            lines += [f"      {line}" for line in dumped.rstrip("\n").splitlines()]
    return "\n".join(lines) + "\n"


def _key(table: Table, snap: SchemaSnapshot) -> str:
    import yaml

    name = table.name if table.schema_name == "public" else table.qualified_name
    return yaml.safe_dump(name, default_style=None).removesuffix("\n...\n").strip()
