"""The queries behind data-quality checks, composed with :mod:`psycopg.sql`.

* One aggregate query per table computes every column-level metric in a single scan
  (``count(*) FILTER (WHERE …)`` per check), not one query per check.
* Each row-level failure has a query listing the failing rows' keys (the table's primary key, else a
  NOT NULL unique key, else ``ctid``), ordered by key, with ``count(*) OVER ()`` so one round trip
  gives the exact number of failing rows and the first keys.
* ``sample: N%`` reads ``TABLESAMPLE BERNOULLI (N) REPEATABLE (seed)``: the aggregate and the key
  queries of a run see the same sampled rows.

Names are quoted with :class:`psycopg.sql.Identifier` (``"user"``, ``"order"``), values with
:class:`psycopg.sql.Literal`. A ``filter`` is user SQL: :func:`condition` accepts exactly one
boolean expression (parsed with PostgreSQL's grammar and printed back from its parse tree), and any
query containing one is sent through the safety gate by the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pglast
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg import sql

from agent19.db.models import Table
from agent19.errors import InputError
from agent19.etl.quality_model import Aggregate, Duplicates, Freshness, Invalid, Missing, Orphans, RowCount


def condition(text: str, where: str) -> sql.Composable:
    """A user's filter as exactly one SQL boolean expression, re-printed from its parse tree."""
    try:
        stmts = pglast.parse_sql(f"SELECT 1 WHERE ({text}\n)")
    except ParseError as exc:
        raise InputError(f"{where}: filter {text!r} is not an SQL condition: {exc.args[0]}",
                         "write a boolean expression such as created_at > now() - interval '1 day'") from None
    stmt = stmts[0].stmt if len(stmts) == 1 else None
    extra = ("fromClause", "groupClause", "havingClause", "sortClause", "limitCount", "limitOffset", "withClause",
             "distinctClause", "lockingClause", "windowClause", "intoClause", "larg", "rarg", "valuesLists")
    if (stmt is None or type(stmt).__name__ != "SelectStmt" or any(getattr(stmt, a, None) for a in extra)
            or len(stmt.targetList or ()) != 1 or stmt.whereClause is None):
        raise InputError(f"{where}: filter {text!r} is more than one condition",
                         "a filter is one boolean expression; it cannot close the parenthesis or add clauses")
    return sql.SQL(RawStream()(stmt.whereClause))


@dataclass
class Target:
    """The table a group of checks reads: its quoted name, sample and filter, and how rows are named."""

    table: Table
    key: list[str]
    key_note: str | None = None
    sample: float | None = None
    sample_method: str = "bernoulli"
    seed: int = 19
    filter: sql.Composable | None = None
    user_sql: bool = False
    """True when a user-written fragment (a filter) is part of its queries: they go through the gate."""

    @property
    def name(self) -> sql.Composable:
        return sql.Identifier(self.table.schema_name, self.table.name)

    def source(self) -> sql.Composable:
        """``schema.table AS t`` with its TABLESAMPLE."""
        src = sql.SQL("{} AS t").format(self.name)
        if self.sample is not None:
            method = sql.SQL("SYSTEM" if self.sample_method == "system" else "BERNOULLI")
            src = sql.SQL("{} TABLESAMPLE {} ({}) REPEATABLE ({})").format(
                src, method, sql.Literal(self.sample), sql.Literal(self.seed))
        return src

    def sample_note(self) -> str | None:
        if self.sample is None:
            return None
        method = "SYSTEM" if self.sample_method == "system" else "BERNOULLI"
        return (f"measured on a sample: TABLESAMPLE {method} ({self.sample:g}) REPEATABLE ({self.seed}); counts are "
                "of the sampled rows")

    def key_exprs(self) -> sql.Composable:
        """The key columns as selected (the whole row when rows have no name: a view without key)."""
        if not self.key:
            return sql.SQL("t.*")
        if self.key == ["ctid"]:
            return sql.SQL("t.ctid")
        return sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in self.key)

    def order(self, prefix: str = "t.") -> sql.Composable:
        """`` ORDER BY`` the key (nothing without one)."""
        if not self.key:
            return sql.SQL("")
        return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.SQL(prefix) + sql.Identifier(k) for k in self.key)

    def where(self, *parts: sql.Composable | None) -> sql.Composable:
        conds = [p for p in (self.filter, *parts) if p is not None]
        if not conds:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(sql.SQL("({})").format(c) for c in conds)


def column(name: str) -> sql.Composable:
    return sql.SQL("t.{}").format(sql.Identifier(name))


def _text_list(values: list[Any]) -> sql.Composable:
    def as_text(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return sql.SQL(", ").join(sql.Literal(as_text(v)) for v in values)


def failing_rows(check: Any) -> sql.Composable | None:
    """The condition a row fails for a column-level check (None when failures are not rows)."""
    if isinstance(check, Missing):
        col = column(check.column)
        if check.missing_values:
            return sql.SQL("{c} IS NULL OR {c}::text IN ({v})").format(c=col, v=_text_list(check.missing_values))
        return sql.SQL("{} IS NULL").format(col)
    if isinstance(check, Invalid):
        col = column(check.column)
        rules: list[sql.Composable] = []
        if check.valid_values is not None:
            rules.append(sql.SQL("{}::text IN ({})").format(col, _text_list(check.valid_values)))
        if check.valid_regex is not None:
            rules.append(sql.SQL("{}::text ~ {}").format(col, sql.Literal(check.valid_regex)))
        if check.valid_min is not None:
            rules.append(sql.SQL("{} >= {}").format(col, sql.Literal(check.valid_min)))
        if check.valid_max is not None:
            rules.append(sql.SQL("{} <= {}").format(col, sql.Literal(check.valid_max)))
        return sql.SQL("{} IS NOT NULL AND NOT ({})").format(col, sql.SQL(" AND ").join(rules))
    return None


def _filtered(agg: sql.Composable, cond: sql.Composable | None) -> sql.Composable:
    return agg if cond is None else sql.SQL("{} FILTER (WHERE {})").format(agg, cond)


def _both(a: sql.Composable | None, b: sql.Composable | None) -> sql.Composable | None:
    if a is None or b is None:
        return a if b is None else b
    return sql.SQL("({}) AND ({})").format(a, b)


def metric_columns(index: int, check: Any, check_filter: sql.Composable | None) -> list[sql.Composable]:
    """The select-list entries measuring one column-level check: ``m<i>`` (and ``d<i>`` for percents)."""
    m, d = sql.Identifier(f"m{index}"), sql.Identifier(f"d{index}")
    out: list[sql.Composable] = []
    if isinstance(check, RowCount):
        out.append(sql.SQL("{} AS {}").format(_filtered(sql.SQL("count(*)"), check_filter), m))
    elif isinstance(check, Missing | Invalid):
        bad = _both(check_filter, failing_rows(check))
        out.append(sql.SQL("{} AS {}").format(_filtered(sql.SQL("count(*)"), bad), m))
        if check.check.endswith("_percent"):
            out.append(sql.SQL("{} AS {}").format(_filtered(sql.SQL("count(*)"), check_filter), d))
    elif isinstance(check, Freshness):
        newest = _filtered(sql.SQL("max({})").format(column(check.column)), check_filter)
        out.append(sql.SQL("extract(epoch FROM now() - ({})::timestamptz)::float8 AS {}").format(newest, m))
    elif isinstance(check, Aggregate):
        agg = sql.SQL("{}({})").format(sql.SQL(check.check), column(check.column))
        if check.check == "sum":
            agg = sql.SQL("coalesce({}, 0)").format(_filtered(agg, check_filter))
            out.append(sql.SQL("{} AS {}").format(agg, m))
        else:
            out.append(sql.SQL("{} AS {}").format(_filtered(agg, check_filter), m))
    else:
        raise TypeError(f"{check.check} is not a column-level metric")
    return out


def aggregate_query(target: Target, entries: list[sql.Composable]) -> sql.Composable:
    """Every column-level metric of a table in one scan."""
    return sql.SQL("SELECT {} FROM {}{}").format(sql.SQL(", ").join(entries), target.source(), target.where())


def keys_query(target: Target, *conds: sql.Composable | None) -> sql.Composable:
    """Every failing row's key, in key order (no LIMIT: this is the query a user runs to list them all)."""
    return sql.SQL("SELECT {k} FROM {src}{w}{o}").format(
        k=target.key_exprs(), src=target.source(), w=target.where(*conds), o=target.order())


def counted(listing: sql.Composable, width: int, limit: int) -> sql.Composable:
    """``listing`` with the total count beside each row, ordered by its first ``width`` columns (not at
    all for 0), at most ``limit`` rows (0: all). The window count is taken before the LIMIT: it is exact."""
    order = sql.SQL(", ").join(sql.SQL(str(i)) for i in range(1, width + 1))
    out = sql.SQL("SELECT l.*, count(*) OVER () AS agent19_total FROM ({}\n) AS l").format(listing)
    if width:
        out = sql.SQL("{} ORDER BY {}").format(out, order)
    if limit > 0:
        out = sql.SQL("{} LIMIT {}").format(out, sql.Literal(limit))
    return out


def duplicates_query(target: Target, check: Duplicates, check_filter: sql.Composable | None) -> sql.Composable:
    """Keys of every row whose value (of ``columns``) occurs more than once; NULLs never duplicate."""
    def value(c: str) -> sql.Composable:
        return sql.SQL("lower({}::text)").format(column(c)) if check.case_insensitive else column(c)

    not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(column(c)) for c in check.columns)
    partition = sql.SQL(", ").join(value(c) for c in check.columns)
    keys = target.key_exprs()
    inner = sql.SQL("SELECT {k}, count(*) OVER (PARTITION BY {p}) AS agent19_n FROM {src}{w}").format(
        k=keys, p=partition, src=target.source(), w=target.where(check_filter, not_null))
    if not target.key:
        return sql.SQL("SELECT d.* FROM ({i}) AS d WHERE agent19_n > 1").format(i=inner)
    names = sql.SQL(", ").join(sql.Identifier(k) for k in target.key)
    return sql.SQL("SELECT {n} FROM ({i}) AS d WHERE agent19_n > 1 ORDER BY {n}").format(n=names, i=inner)


def orphans_query(target: Target, check: Orphans, parent: Table, parent_columns: list[str],
                  check_filter: sql.Composable | None) -> sql.Composable:
    """Keys of rows whose (non-null) ``columns`` match no row of the referenced table."""
    not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(column(c)) for c in check.columns)
    pairs = zip(check.columns, parent_columns, strict=True)
    match = sql.SQL(" AND ").join(sql.SQL("p.{} = {}").format(sql.Identifier(pc), column(c)) for c, pc in pairs)
    missing = sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})").format(
        sql.Identifier(parent.schema_name, parent.name), match)
    return keys_query(target, check_filter, not_null, missing)
