"""What a new index costs writers, in numbers: for every index a migration creates.

From the table's measured write activity (:mod:`agent19.migrate.planning.write_activity`):

* every insert adds one entry to the new index;
* every update that is not HOT adds one entry too; an update stays HOT only when it changes no
  indexed column, so when the table's UPDATE statements (pg_stat_statements) set a column of the
  new index, its HOT updates are lost — each then writes every index of the table, not just the heap;
  when no UPDATE the login can read sets them but other roles' statements are hidden from it (no
  ``pg_read_all_stats``), the HOT loss is unknown, with what is needed — never "stay HOT";
* its size: rows × (average key width from pg_stats + 8 bytes tuple header + 4 bytes line pointer,
  aligned to 8) / 0.9 leaf fill — an estimate for a B-tree, stated as such.

Without measurements a figure is ``None`` and the text says what is missing; nothing is assumed.
"""

from __future__ import annotations

from typing import Any

from pglast.parser import ParseError
from pydantic import BaseModel, Field

from agent19.db.models import SchemaSnapshot
from agent19.migrate.lint.rules._base import norm
from agent19.migrate.patterns.sqlnames import ident
from agent19.migrate.planning.model import IndexWriteCost, PlannedOperation
from agent19.migrate.planning.write_activity import TableActivity
from agent19.report.sqlfacts import statement_facts
from agent19.sqltree import parse_json

INDEX_KINDS = ("create_index", "create_index_concurrently", "add_unique", "add_primary_key")

__all__ = ["INDEX_KINDS", "IndexWriteCost", "index_write_costs"]


class _Key(BaseModel):
    columns: list[str] = Field(default=[])
    name: str | None = None


def _key(sql: str, parsed: dict[str, dict[str, Any]] | None = None) -> _Key:
    index = parsed.get(sql) if parsed else None
    if index is None:
        index = _one_create_index(sql)
    if index is not None:  # read from the JSON tree: the same name and columns statement_facts gives, without
        # building pglast's typed tree (a plan creating many indexes spent a tenth of its time there)
        rel = index.get("relation", {})
        name = ident(index["idxname"]) if index.get("idxname") else None
        if name and rel.get("schemaname"):
            name = f"{ident(rel['schemaname'])}.{name}"
        return _Key(columns=[e["IndexElem"]["name"] for e in index.get("indexParams", [])
                             if e.get("IndexElem", {}).get("name")], name=name)
    for f in statement_facts(sql):
        if f.kind == "create_index":
            return _Key(columns=[c.name for c in f.columns], name=f.name)
    return _Key()


def _one_create_index(sql: str) -> dict[str, Any] | None:
    """The IndexStmt fields of ``sql`` when it is exactly one CREATE INDEX, else None."""
    try:
        stmts = parse_json(sql)
    except ParseError:
        return None
    if len(stmts) != 1:
        return None
    found = stmts[0].get("stmt", {}).get("IndexStmt")
    return found if isinstance(found, dict) else None


def _size(rows: int | None, act: TableActivity | None, columns: list[str]) -> int | None:
    if rows is None or act is None or not columns or any(c not in act.column_widths for c in columns):
        return None
    tuple_bytes = 8 + sum(act.column_widths[c] for c in columns)
    per_entry = (tuple_bytes + 7) // 8 * 8 + 4
    return int(rows * per_entry / 0.9) + 8192


def _cost(p: PlannedOperation, act: TableActivity | None, catalog: SchemaSnapshot | None,
          parsed: dict[str, dict[str, Any]] | None = None) -> IndexWriteCost:
    key = _key(p.sql, parsed)
    t = catalog.table(p.table) if catalog and p.table else None
    rows = t.row_estimate if t else p.estimated_rows
    size = _size(rows, act, key.columns)
    if act is None:
        return IndexWriteCost(
            operation=p.order, table=p.table, index=key.name, columns=key.columns, estimated_size_bytes=size,
            summary=f"operation {p.order}: write cost unknown - the table's write rates were not measured "
            "(plan with a database: --dsn; --write-sample-seconds N for a sampling window)")
    ins, upd, hot = act.inserts_per_second, act.updates_per_second, act.hot_updates_per_second
    setting = None if act.updated_columns is None else sorted(c for c in key.columns if c in act.updated_columns)
    hot_lost = None if setting is None else (bool(setting) if key.columns else None)
    if hot_lost is False and act.updates_hidden:
        hot_lost = None  # none of the UPDATEs this login reads sets them; the hidden ones may
    lost = hot if hot_lost else 0.0
    entries = ins + (upd - hot) + lost
    if hot_lost is None:
        hot_text = ("HOT loss unknown: pg_stat_statements cannot be read, so which columns UPDATEs set is "
                    "unknown" if setting is None else "HOT loss unknown: an expression index" if not key.columns
                    else f"HOT loss unknown: no UPDATE this login can read sets its columns, but "
                    f"{act.updates_hidden}")
    elif hot_lost:
        hot_text = (f"UPDATEs set {', '.join(setting)} (pg_stat_statements): the {hot:,.1f} HOT updates/s become "
                    "non-HOT and write every index of the table")
    else:
        hot_text = "no UPDATE sets its columns (pg_stat_statements): HOT updates stay HOT"
    size_text = (f"~{size / 1024**2:,.1f} MB estimated (B-tree, {rows:,} rows)" if size is not None
                 else "size unknown (no row count or pg_stats widths: ANALYZE the table)")
    return IndexWriteCost(
        operation=p.order, table=p.table, index=key.name, columns=key.columns, inserts_per_second=ins,
        updates_per_second=upd, hot_updates_per_second=hot, window=act.window, hot_lost=hot_lost,
        hot_updates_lost_per_second=lost if hot_lost is not None else None, index_entries_per_second=entries,
        estimated_size_bytes=size,
        summary=f"operation {p.order}: {entries:,.1f} new index entries/s ({ins:,.1f} inserts/s + "
        f"{max(upd - hot, 0):,.1f} non-HOT updates/s + {lost:,.1f} HOT updates/s lost, {act.window}); "
        f"{hot_text}; {size_text}")


def index_write_costs(planned: list[PlannedOperation], activity: dict[str, TableActivity] | None,
                      catalog: SchemaSnapshot | None,
                      parsed: dict[str, dict[str, Any]] | None = None) -> list[IndexWriteCost]:
    """One cost per operation that creates an index on a table that exists before the migration. ``parsed``: the
    IndexStmt fields of CREATE INDEX statements already parsed, by their text (the planner's: an operation whose
    SQL is one of them is not parsed again)."""
    out = []
    for p in planned:
        if p.type not in INDEX_KINDS or p.estimated_rows == 0:
            continue
        act = activity.get(norm(p.table)) if activity is not None and p.table else None
        if activity is not None and act is None:
            continue  # measured, and the table is not in pg_stat_user_tables: created by this migration
        out.append(_cost(p, act, catalog, parsed))
    return out
