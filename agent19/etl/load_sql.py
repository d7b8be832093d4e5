"""The statements that merge a batch's staged rows into the destination (:class:`agent19.etl.load.Loader`).

The rows are staged in a temporary table (:data:`STAGE`) that numbers them in the order they came (:data:`SEQ`,
the cursor order). Every statement reads them ``DISTINCT ON`` the key, so rows of one batch with the same key
collapse to the last one in cursor order (a statement cannot touch a row twice). Only the non-key columns are
set, and only where the row changed.
"""

from __future__ import annotations

from psycopg import sql

STAGE = "_agent19_etl_stage"
SEQ = "_agent19_seq"


def _changes(columns: list[str], key: list[str], new: str) -> tuple[sql.Composable, sql.Composable] | None:
    """Over the non-key columns, from the rows aliased ``new`` into the destination ``d``: the SET list and
    the condition that the row changed (None when every column is a key column)."""
    rest = [sql.Identifier(c) for c in columns if c not in key]
    if not rest:
        return None
    sets = sql.SQL(", ").join(sql.SQL("{c} = " + new + ".{c}").format(c=c) for c in rest)
    mine = sql.SQL(", ").join(sql.SQL("d.{}").format(c) for c in rest)
    theirs = sql.SQL(", ").join(sql.SQL(new + ".{}").format(c) for c in rest)
    return sets, sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(mine, theirs)


def on_conflict(table: sql.Composable, columns: list[str], key: list[str]) -> sql.Composable:
    """The staged rows by ``INSERT … ON CONFLICT (key) DO UPDATE … WHERE the row changed``."""
    ident = sql.Identifier
    cols = sql.SQL(", ").join(ident(c) for c in columns)
    keys = sql.SQL(", ").join(ident(c) for c in key)
    changes = _changes(columns, key, "EXCLUDED")
    action = sql.SQL("DO UPDATE SET {} WHERE {}").format(*changes) if changes else sql.SQL("DO NOTHING")
    return sql.SQL(
        "WITH w AS (INSERT INTO {table} AS d ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM {stage} "
        "ORDER BY {keys}, {seq} DESC ON CONFLICT ({keys}) {action} RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated "
        "FROM w").format(table=table, cols=cols, keys=keys, stage=ident(STAGE), seq=ident(SEQ),
                          action=action)


def update_insert(table: sql.Composable, columns: list[str], key: list[str]) -> sql.Composable:
    """UPDATE the rows that changed, INSERT those whose key is new, in one statement on one snapshot: no
    speculative insertion, so about twice as fast as ON CONFLICT (tools/bench/bench_etl.py). A key another
    session inserts meanwhile raises a unique violation; the caller then runs ON CONFLICT instead."""
    ident = sql.Identifier
    cols = sql.SQL(", ").join(ident(c) for c in columns)
    keys = sql.SQL(", ").join(ident(c) for c in key)
    match = sql.SQL(" AND ").join(sql.SQL("d.{c} = s.{c}").format(c=ident(c)) for c in key)
    changes = _changes(columns, key, "s")
    if changes:
        update = sql.SQL("UPDATE {table} d SET {sets} FROM s WHERE {match} AND {changed} RETURNING 1").format(
            table=table, match=match, sets=changes[0], changed=changes[1])
    else:
        update = sql.SQL("SELECT 1 WHERE false")
    return sql.SQL(
        "WITH s AS MATERIALIZED (SELECT DISTINCT ON ({keys}) {cols} FROM {stage} ORDER BY {keys}, {seq} DESC), "
        "u AS ({update}), "
        "i AS (INSERT INTO {table} ({cols}) SELECT {cols} FROM s WHERE NOT EXISTS (SELECT 1 FROM {table} d "
        "WHERE {match}) RETURNING 1) "
        "SELECT (SELECT count(*) FROM i) AS inserted, (SELECT count(*) FROM u) AS updated").format(
        keys=keys, cols=cols, stage=ident(STAGE), seq=ident(SEQ), update=update, table=table, match=match)


def merge_into(table: sql.Composable, columns: list[str], key: list[str]) -> tuple[sql.Composable, sql.Composable]:
    """Strategy merge (15+): the count of the staged keys that are new, to run first (MERGE on 15 and 16 cannot
    say which rows it inserted), and the MERGE that updates the rows that changed and inserts new keys."""
    ident = sql.Identifier
    cols = sql.SQL(", ").join(ident(c) for c in columns)
    keys = sql.SQL(", ").join(ident(c) for c in key)
    match = sql.SQL(" AND ").join(sql.SQL("d.{c} = s.{c}").format(c=ident(c)) for c in key)
    source = sql.SQL("(SELECT DISTINCT ON ({keys}) {cols} FROM {stage} ORDER BY {keys}, {seq} DESC) s").format(
        keys=keys, cols=cols, stage=ident(STAGE), seq=ident(SEQ))
    changes = _changes(columns, key, "s")
    matched = (sql.SQL("WHEN MATCHED AND {} THEN UPDATE SET {} ").format(changes[1], changes[0]) if changes
               else sql.SQL(""))
    values = sql.SQL(", ").join(sql.SQL("s.{}").format(ident(c)) for c in columns)
    new = sql.SQL("SELECT count(*) AS n FROM (SELECT DISTINCT {keys} FROM {stage}) s WHERE NOT "
                  "EXISTS (SELECT FROM {table} d WHERE {match})").format(
        keys=keys, stage=ident(STAGE), table=table, match=match)
    merge = sql.SQL(
        "MERGE INTO {table} d USING {source} ON {match} {matched}"
        "WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})").format(
        table=table, source=source, match=match, matched=matched, cols=cols, values=values)
    return new, merge
