"""A backfill's batch: one statement that updates the next keys and moves the run's checkpoint past them.

Shared by :func:`agent19.migrate.backfill.executor.run_backfill` and the script ``--emit python`` writes
(its template carries the same code, and tests compare the two statements): a run started by one resumes
with the other. :func:`one_trip` sends a batch's BEGIN, ``SET LOCAL lock_timeout``, this statement and
COMMIT in one round trip.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import sql

from agent19.migrate.patterns.sqlnames import type_from_server

CHECKPOINT_TABLE = "agent19_backfill_checkpoint"


def batch_query(table: str, keys: list[tuple[str, str]], set_sql: str, where: str | None,
                after: bool, checkpoint: str = CHECKPOINT_TABLE) -> sql.Composed:
    """One batch and its checkpoint move, in one statement (one round trip).

    It locks the checkpoint row ``%(name)s`` if its ``last_key`` is still ``%(prev)s`` (the key this run last
    committed: ``%(k0)s…`` are its elements), takes the next ``%(n)s`` keys after it, updates those matching
    ``where``, and moves the checkpoint past them (or marks it finished when no key is left). ``moved`` = 0:
    another run moved the checkpoint since, and nothing was done.
    """
    cols = [sql.Identifier(k) for k, _ in keys]
    aliases = [sql.Identifier(f"_a19_k{i}") for i in range(len(keys))]
    tbl, cp = sql.SQL(table), sql.Identifier(checkpoint)  # written by the server's pg_catalog.quote_ident (Q_TABLE)
    select_keys = sql.SQL(", ").join(sql.SQL("{} AS {}").format(c, a) for c, a in zip(cols, aliases, strict=True))
    order = sql.SQL(", ").join(cols)
    # the batch is the key range (after, last key of the next n]: one index range scan updates it
    mine = sql.SQL(", ").join(sql.SQL("{}.{}").format(tbl, c) for c in cols)
    hi = sql.SQL(", ").join(sql.SQL("_a19_hi.{}").format(a) for a in aliases)
    span = sql.SQL("({}) <= ({})").format(mine, hi)
    cond = sql.SQL("")
    if after:
        bounds = sql.SQL(", ").join(
            sql.SQL("%(k{})s::{}").format(sql.SQL(str(i)), type_from_server(t)) for i, (_, t) in enumerate(keys))
        cond = sql.SQL(" AND ({}) > ({})").format(order, bounds)
        span = sql.SQL("({}) > ({}) AND {}").format(mine, bounds, span)
    filt = sql.SQL(" AND ({}\n)").format(sql.SQL(where)) if where else sql.SQL("")
    last = sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases)
    desc = sql.SQL(", ").join(sql.SQL("{} DESC").format(a) for a in aliases)
    return sql.SQL(
        "WITH _a19_cp AS (SELECT 1 AS _a19_held FROM {cp} WHERE name = %(name)s\n"
        "   AND last_key IS NOT DISTINCT FROM %(prev)s::text[] FOR UPDATE),\n"
        " _a19_batch AS (SELECT {select_keys} FROM {tbl} WHERE EXISTS (SELECT FROM _a19_cp){cond}\n"
        "   ORDER BY {order} LIMIT %(n)s),\n"
        " _a19_hi AS (SELECT * FROM _a19_batch ORDER BY {desc} LIMIT 1),\n"
        " _a19_upd AS (UPDATE {tbl} SET {set}\n FROM _a19_hi WHERE {span}{filt} RETURNING 1),\n"
        " _a19_n AS (SELECT (SELECT count(*) FROM _a19_batch) AS _a19_scanned,\n"
        "   (SELECT count(*) FROM _a19_upd) AS _a19_updated, (SELECT ARRAY[{last}] FROM _a19_hi) AS _a19_last),\n"
        " _a19_move AS (UPDATE {cp} SET last_key = COALESCE(_a19_n._a19_last, {cp}.last_key),\n"
        "   rows_updated = rows_updated + _a19_n._a19_updated, rows_scanned = rows_scanned + _a19_n._a19_scanned,\n"
        "   batches = batches + (_a19_n._a19_scanned > 0)::int, updated_at = now(),\n"
        "   finished_at = CASE WHEN _a19_n._a19_scanned = 0 THEN now() ELSE {cp}.finished_at END\n"
        "   FROM _a19_n, _a19_cp WHERE name = %(name)s RETURNING 1)\n"
        "SELECT _a19_scanned AS scanned, _a19_updated AS updated, _a19_last AS last_key,\n"
        " (SELECT count(*) FROM _a19_move) AS moved FROM _a19_n"
    ).format(cp=cp, select_keys=select_keys, tbl=tbl, cond=cond, order=order, set=sql.SQL(set_sql), span=span,
             filt=filt, last=last, desc=desc)


def batch_params(name: str, prev: list[str] | None, size: int) -> dict[str, Any]:
    """The parameters of :func:`batch_query` for the batch after ``prev`` (the checkpoint's ``last_key``)."""
    params: dict[str, Any] = {"name": name, "prev": prev, "n": size}
    params.update({f"k{i}": v for i, v in enumerate(prev or ())})
    return params


def one_trip(conn: psycopg.Connection[Any]) -> Any:
    """Pipeline mode where libpq has it: the statements of a batch's transaction go in one round trip."""
    return conn.pipeline() if psycopg.Pipeline.is_supported() else contextlib.nullcontext()
