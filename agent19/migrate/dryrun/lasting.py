"""What a dry run on the target leaves there that its rollback cannot undo, measured before and after.

A rollback undoes the rows and the catalog a transaction wrote, not everything the server did meanwhile:

* **sizes**: a rolled-back INSERT or UPDATE leaves its row versions in the table (dead: autovacuum removes them,
  the pages stay until a later VACUUM can cut the table's end) and its entries in every index (a btree never
  shrinks). Read as ``pg_relation_size`` of the tables and indexes before and after: growth is reported
  (``warning``) with the amount;
* **planner statistics written in place**: ANALYZE, VACUUM and CREATE INDEX (through the table's row count)
  overwrite ``pg_class.reltuples``/``relpages`` outside the transaction, and ANALYZE and VACUUM count themselves
  in ``pg_stat_all_tables`` (``last_analyze``, the rows-modified counter reset: autoanalyze then waits). What they
  measured is the table as the migration left it inside the transaction — after a DELETE, an empty table, which
  the planner keeps believing after the rollback. A change is reported with the numbers and the remedy
  (``ANALYZE`` the table); an ``error`` when the planner now believes the table empty or the row count is off by
  more than half or double, ``info`` when it moved by a tenth at most or where there was no figure yet (never
  analyzed). Where autovacuum or autoanalyze also ran on the table meanwhile, it may be theirs: one step milder;
* **sequences** are compared by the catalog diff (:func:`agent19.migrate.dryrun.schema_diff.position`,
  ``measured``): the amount ``nextval`` advanced each, the share of its range now used.

The dry run prevents what it can (ANALYZE and VACUUM run only in the scratch database:
:func:`agent19.migrate.dryrun.prediction.needs_scratch`); this module measures what is left.
"""

from __future__ import annotations

from typing import Any

import psycopg

from agent19.db.catalog import CAT, EQ, NE, NOT_LIKE, _chars
from agent19.migrate.dryrun.schema_diff import Difference

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

LOCK_TIMEOUT = "1s"
"""pg_relation_size opens each relation (ACCESS SHARE): a relation another session holds exclusively is waited for
this long at most, then the sizes are not compared (said)."""
SET_LOCK_TIMEOUT = f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"

Q_RELATIONS = f"""
SELECT n.nspname::pg_catalog.text {CAT} '.' {CAT} c.relname::pg_catalog.text AS name,
       c.relkind::pg_catalog.text AS kind, c.reltuples::pg_catalog.float8 AS reltuples,
       c.relpages::pg_catalog.int8 AS relpages, pg_catalog.pg_relation_size(c.oid) AS bytes,
       s.analyze_count, s.vacuum_count, s.autoanalyze_count OPERATOR(pg_catalog.+) s.autovacuum_count AS auto_count
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
  LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid {EQ} c.oid
 WHERE c.relkind {EQ} ANY ({_chars('r', 'm', 'i')})
   AND n.nspname {NE} ALL ('{{pg_catalog,information_schema}}'::pg_catalog.name[])
   AND n.nspname::pg_catalog.text {NOT_LIKE} 'pg\\_toast%'
   AND NOT pg_catalog.pg_is_other_temp_schema(c.relnamespace)
"""

State = dict[str, dict[str, Any]]


def read(conn: psycopg.Connection[Any]) -> State | str:
    """The tables' and indexes' sizes and planner statistics (``conn`` in autocommit, outside the dry run's
    transaction), or why they could not be read."""
    try:
        with conn.transaction():
            conn.execute(SET_LOCK_TIMEOUT)
            rows = conn.execute(Q_RELATIONS).fetchall()
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {r["name"]: dict(r) for r in (row if isinstance(row, dict) else _named(row) for row in rows)}


def _named(row: Any) -> dict[str, Any]:
    keys = ("name", "kind", "reltuples", "relpages", "bytes", "analyze_count", "vacuum_count", "auto_count")
    return dict(zip(keys, row, strict=True))


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB" if n >= 1048576 else f"{n / 1024:.0f} kB"


def _rows(n: float) -> str:
    return "unknown (-1: never analyzed)" if n < 0 else f"{n:,.0f}"


def _grown(name: str, a: dict[str, Any], b: dict[str, Any]) -> Difference | None:
    if b["bytes"] <= a["bytes"]:
        return None
    what = ("its entries for the rolled-back rows stay: an index never shrinks (REINDEX CONCURRENTLY rebuilds it)"
            if a["kind"] == "i" else "the rolled-back row versions stay as dead rows (autovacuum removes them; the "
            "pages stay)")
    return Difference(kind="size", object=name, change="changed", severity="warning", detail=(
        f"{_mb(a['bytes'])} -> {_mb(b['bytes'])} (+{_mb(b['bytes'] - a['bytes'])}): {what}; for a large trial "
        "write prefer --isolated or a staging copy"))


def _severity(a: dict[str, Any], b: dict[str, Any]) -> str:
    """``error``: the planner now believes the table empty while it has pages, or its row count is off by more
    than half or double; ``info``: within a tenth, or a first figure where there was none (-1: never analyzed) —
    what an ANALYZE would have measured; else ``warning``."""
    old, new = a["reltuples"], b["reltuples"]
    if (new == 0 and old != 0 and b["relpages"] > 0) or (old > 0 and new >= 0 and not old / 2 <= new <= old * 2):
        return "error"
    if (a["analyze_count"], a["vacuum_count"]) != (b["analyze_count"], b["vacuum_count"]):
        return "warning"
    if old < 0 or (new >= 0 and abs(new - old) <= 0.1 * max(old, new, 1)):
        return "info"
    return "warning"


def _statistics(name: str, a: dict[str, Any], b: dict[str, Any]) -> Difference | None:
    changes = []
    if a["reltuples"] != b["reltuples"] or a["relpages"] != b["relpages"]:
        changes.append(f"reltuples {_rows(a['reltuples'])} -> {_rows(b['reltuples'])}, relpages "
                       f"{a['relpages']:,} -> {b['relpages']:,} (written in place, not rolled back: the planner "
                       "estimates from these)")
    if (a["analyze_count"], a["vacuum_count"]) != (b["analyze_count"], b["vacuum_count"]):
        changes.append("ANALYZE or VACUUM counted on it (last_analyze set, the rows-modified counter reset: "
                       "autoanalyze comes later)")
    if not changes:
        return None
    severity, why = _severity(a, b), ""
    if a["auto_count"] != b["auto_count"]:
        severity = "warning" if severity == "error" else "info"
        why = "; autovacuum or autoanalyze also ran on it meanwhile: it may be theirs"
    return Difference(kind="statistics", object=name, change="changed", severity=severity, detail=(
        "; ".join(changes) + f"{why}; measure the table again with ANALYZE {name}"))


def effects(before: State | str, after: State | str, *, statistics: bool = True) -> tuple[list[Difference], str | None]:
    """The tables and indexes grown, and (``statistics``) the tables whose planner statistics changed, from
    ``before`` to ``after`` (:func:`read`); and why they were not compared, when they could not be read."""
    if isinstance(before, str) or isinstance(after, str):
        return [], f"sizes and planner statistics not compared: {before if isinstance(before, str) else after}"
    out: list[Difference] = []
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        if (grown := _grown(name, a, b)) is not None:
            out.append(grown)
        if statistics and a["kind"] != "i" and (changed := _statistics(name, a, b)) is not None:
            out.append(changed)
    return out, None
