"""The batched backfill executor: ``UPDATE table SET … WHERE …`` in short keyset batches, resumable.

How a run works:

* Rows are visited in primary-key order, ``LIMIT n`` keys after the last key done (keyset
  pagination — never OFFSET, whose cost grows with every batch). Only rows of the batch that
  match ``where`` are updated.
* Each batch is its own short transaction with ``lock_timeout``: one statement (:func:`batch_query`)
  does its UPDATE and the move of the checkpoint (a row of ``agent19_backfill_checkpoint``), which
  commit together, so a run killed at any moment — even SIGKILL — leaves either both or neither: a
  resumed run never skips a row nor updates one twice, whatever the SET expression is. BEGIN,
  ``SET LOCAL lock_timeout``, that statement and COMMIT go in one round trip (pipeline mode).
* The batch size adapts so that each batch takes about ``target_batch_ms``. Short batches (20 ms by
  default): a writer of the application that needs a row a batch updated waits until the batch
  commits, so the batch time bounds what a backfill adds to the writers' worst latency.
* Between batches: an optional pause, and, when replicas stream from this server
  (``pg_stat_replication``), a wait while their replay lag exceeds ``max_replication_lag_s``
  (looked at about once a second, :data:`LAG_CHECK_S`).
* A session advisory lock keeps two runs of the same backfill apart.
* At the end, ``where`` is counted again (remaining rows, expected 0).
* Row-level security: a policy that applies to the login would limit the walk, the UPDATE and the counts to the
  rows it shows, and the validation would call the rest done. Such a table is refused before anything runs, and
  the counts (what a run would overwrite, the validation) read with ``row_security = off``, so a condition that
  reads another filtered table errors instead of counting a subset (:mod:`agent19.migrate.backfill.every_row`).

Rows inserted *behind* the cursor while it runs are not visited: the patterns that use a
backfill install a trigger or a default first, so new rows never need it.

What a run is asked and what it reports (:class:`BackfillSpec`, :class:`BackfillResult`) are in
:mod:`agent19.migrate.backfill.spec`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from agent19.errors import InputError
from agent19.migrate.backfill.batch_statement import CHECKPOINT_TABLE, batch_params, batch_query, one_trip
from agent19.migrate.backfill.every_row import count_every_row, refuse_hidden_rows
from agent19.migrate.backfill.spec import BackfillResult, BackfillSpec, Progress, check_fragments
from agent19.safety import measure as measuring
from agent19.sqltree import parse_json
from agent19.tool_names import argument
from agent19.units import human_duration, human_size

log = logging.getLogger(__name__)


RETRYABLE = {"55P03", "40P01", "40001"}  # lock_not_available, deadlock_detected, serialization_failure

Q_CHECKPOINT_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    name          text PRIMARY KEY,
    table_name    text NOT NULL,
    set_sql       text NOT NULL,
    where_sql     text,
    key_columns   text[] NOT NULL,
    last_key      text[],
    rows_updated  bigint NOT NULL DEFAULT 0,
    rows_scanned  bigint NOT NULL DEFAULT 0,
    batches       integer NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
)
"""
Q_TABLE = """
SELECT c.oid, pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
              OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS qualified,
       c.reltuples::pg_catalog.int8 AS estimate,
       pg_catalog.concat(n.nspname, '.', c.relname) AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s::pg_catalog.text)
"""
"""The table, written as SQL by the server's quote_ident — pg_catalog-qualified, as every function and operator
here: an overload in a schema of the path (``public.quote_ident(name)``) would otherwise write what goes into the
batches' SQL (review r28 F12). The same text the emitted script and the procedure store in the checkpoint."""
Q_PK = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_index i
  JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = %s AND i.indisprimary
 ORDER BY k.ord
"""
Q_COLTYPES = """
SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
 WHERE attrelid = %s AND attname = ANY(%s) AND attnum > 0 AND NOT attisdropped
"""
# A replica that has replayed everything this server has written is not behind, whatever replay_lag
# still shows: after catching up, replay_lag keeps the last lag it measured until the standby's next
# status reply (wal_receiver_status_interval, 10 s by default) clears it. One that is behind counts
# with replay_lag, which grows with the age of the oldest WAL it has not replayed (see _wait_for_replicas).
Q_LAG = """
WITH here AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
SELECT count(*) AS replicas,
       COALESCE(max(CASE WHEN pg_wal_lsn_diff(here.lsn, r.replay_lsn) <= 0 THEN 0
                         ELSE EXTRACT(epoch FROM r.replay_lag) END), 0)::float8 AS lag,
       COALESCE(max(pg_wal_lsn_diff(here.lsn, r.replay_lsn)), 0)::bigint AS behind
  FROM pg_stat_replication r CROSS JOIN here
 -- a logical decoding consumer (CDC, a subscription) is not a replica serving reads: it does not hold the backfill.
 -- Its walsender is connected to a database (a physical one is not), from before it acquires its slot.
 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.pid AND a.datid IS NOT NULL)
   AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical')
"""
LAG_POLL_S = 0.25
LAG_CHECK_S = 1.0  # between two looks at the replicas' lag while batches run: a lag is seconds, a batch milliseconds


def _ensure_checkpoint_table(conn: psycopg.Connection[Any], table: str) -> None:
    # The first schema of the login's path that exists and is not pg_catalog (where an unqualified CREATE lands,
    # unless a path lists pg_catalog first); reads find it through the path.
    row = conn.execute("SELECT s FROM unnest(current_schemas(false)) WITH ORDINALITY u(s, i) "
                       "WHERE s <> 'pg_catalog' ORDER BY i LIMIT 1").fetchone()
    if row is None:
        raise InputError("no schema in search_path to create the backfill's checkpoint table in",
                         "SET search_path (e.g. ALTER ROLE ... SET search_path = \"$user\", public) or create a schema")
    schema = row[0] if isinstance(row, tuple) else next(iter(row.values()))
    conn.execute(sql.SQL(Q_CHECKPOINT_DDL).format(table=sql.Identifier(schema, table)))


def _one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row


def _key_columns(conn: psycopg.Connection[Any], oid: int, spec: BackfillSpec) -> list[tuple[str, str]]:
    if spec.key:
        rows = conn.execute(Q_COLTYPES, (oid, spec.key)).fetchall()
        types = {_v(r, 0, "name"): _v(r, 1, "type") for r in rows}
        missing = [k for k in spec.key if k not in types]
        if missing:
            raise InputError(f"key column(s) {', '.join(missing)} not in {spec.table}")
        return [(k, types[k]) for k in spec.key]
    rows = conn.execute(Q_PK, (oid,)).fetchall()
    if not rows:
        raise InputError(f"{spec.table} has no primary key to walk in batches",
                         f"pass {argument('key')} naming unique, non-null column(s) with an index")
    return [(_v(r, 0, "name"), _v(r, 1, "type")) for r in rows]


def _v(row: Any, i: int, key: str) -> Any:
    return row[key] if isinstance(row, dict) else row[i]


Q_OVERWRITTEN = "SELECT count(*) FILTER (WHERE ({where}) AND ({filled})) AS n, count(*) AS total FROM ONLY {table}"


def overwritten_rows(conn: Any, spec: BackfillSpec) -> measuring.Measurement:
    """The rows whose SET columns hold a value the backfill would overwrite (matched by its WHERE, not
    NULL), counted exactly on ``conn`` (a read-only transaction): `SET c = NULL WHERE id > 0` overwrites
    every row. Nothing when a run of it already started (resuming changes nothing more than measured)."""
    update = parse_json(f"UPDATE t SET {spec.set}")[0]["stmt"]["UpdateStmt"]
    columns = sorted({t["ResTarget"]["name"] for t in update["targetList"]})
    filled = sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns)
    if not spec.restart and _started(conn, spec):
        # measured when it started; resuming continues it, and a finished run changes nothing more
        return measuring.Measurement(touches=[])
    found = conn.execute(Q_TABLE, (spec.table,)).fetchone()
    if found is None:
        raise InputError(f"table {spec.table} does not exist", "give the table as name or schema.name")
    refuse_hidden_rows(conn, found["qualified"])
    query = sql.SQL(Q_OVERWRITTEN).format(where=sql.SQL(spec.where or "true"), filled=filled,
                                          table=sql.SQL(found["qualified"]))
    row = count_every_row(conn, query, "nothing was updated")
    touch = measuring.Touch(table=found["name"], rows_before=row["total"], inserted=0, updated=row["n"], deleted=0)
    return measuring.Measurement(touches=[touch] if row["n"] else [])


def _started(conn: Any, spec: BackfillSpec) -> bool:
    """A run of this backfill exists (stopped or finished) under its checkpoint name."""
    if conn.execute("SELECT to_regclass(%s) IS NULL AS absent", (CHECKPOINT_TABLE,)).fetchone()["absent"]:
        return False
    row = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(
        sql.Identifier(CHECKPOINT_TABLE)), (spec.checkpoint_name(),)).fetchone()
    return row is not None


def _wait_for_replicas(conn: psycopg.Connection[Any], limit: float | None, progress: Progress | None,
                       done: float, total: float | None) -> float:
    """Wait while a replica streaming from this server is more than ``limit`` seconds behind; the seconds waited.

    Observed on PostgreSQL 15 with a standby whose replay is paused (``pg_wal_replay_pause()``):
    its ``replay_lag`` grows with the age of the oldest WAL not replayed, but only changes when the
    standby sends a reply — on receiving WAL, else every ``wal_receiver_status_interval`` (10 s) —
    so it reveals a stalled replica while batches write, and stays at least as high while we wait.
    After ``pg_wal_replay_resume()`` the standby catches up and reports it at once (replay_lsn =
    current WAL position), yet ``replay_lag`` keeps showing the lag of the last WAL it replayed —
    the time from when that WAL was sent to the catch-up, up to the whole pause (0.8–4 s in our
    runs) — until the next status reply. A backfill waiting on that stale value would idle up to
    10 s more; hence :data:`Q_LAG`: a replica with no WAL left to replay counts as 0 s.
    """
    if limit is None:
        return 0.0
    start, waited = time.monotonic(), False
    while True:
        row = _one(conn, Q_LAG)
        replicas, lag, behind = _v(row, 0, "replicas"), _v(row, 1, "lag"), _v(row, 2, "behind")
        if not replicas or lag <= limit:
            return time.monotonic() - start if waited else 0.0
        waited = True
        if progress:
            progress(done, total, f"waiting: replica replay lag {lag:.1f}s > {limit:.1f}s "
                                  f"({human_size(int(behind))} of WAL not replayed)")
        time.sleep(LAG_POLL_S)


def run_backfill(conn: psycopg.Connection[Any], spec: BackfillSpec, progress: Progress | None = None,
                 checkpoint_table: str = CHECKPOINT_TABLE) -> BackfillResult:
    """Run (or resume) the backfill on ``conn``, a dedicated autocommit session.

    Raises :class:`InputError` for an unknown table or missing key, and re-raises a batch's error
    after ``max_retries`` lock timeouts/deadlocks (the checkpoint keeps the progress made).
    """
    check_fragments(spec)
    if not conn.autocommit:
        raise InputError("run_backfill needs an autocommit connection (each batch is its own transaction)")
    row = _one(conn, Q_TABLE, (spec.table,))
    if row is None:
        raise InputError(f"table {spec.table!r} not found", "give name or schema.name")
    oid, table, estimate = _v(row, 0, "oid"), _v(row, 1, "qualified"), _v(row, 2, "estimate")
    keys = _key_columns(conn, oid, spec)
    refuse_hidden_rows(conn, table)
    name = spec.checkpoint_name()
    _ensure_checkpoint_table(conn, checkpoint_table)
    got = _one(conn, "SELECT pg_try_advisory_lock(hashtext(%s)) AS ok", (f"agent19_backfill:{name}",))
    if not _v(got, 0, "ok"):
        raise InputError(f"backfill {name!r} is already running in another session",
                         "wait for it, or stop it; its checkpoint keeps its progress")
    try:
        return _run(conn, spec, progress, table, estimate, keys, name, checkpoint_table)
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"agent19_backfill:{name}",))


def _run(conn: psycopg.Connection[Any], spec: BackfillSpec, progress: Progress | None, table: str,
         estimate: int, keys: list[tuple[str, str]], name: str, checkpoint_table: str) -> BackfillResult:
    start = time.monotonic()
    cp = sql.Identifier(checkpoint_table)
    if spec.restart:
        conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(cp), (name,))
    existing = _one(conn, sql.SQL("SELECT * FROM {} WHERE name = %s").format(cp), (name,))
    if existing is not None:
        ex = existing if isinstance(existing, dict) else None
        if ex is not None and (ex["set_sql"] != spec.set or ex["where_sql"] != spec.where):
            raise InputError(f"checkpoint {name!r} belongs to a different backfill ({ex['set_sql']!r})",
                             "use another name, or restart=true to start over")
    else:
        conn.execute(
            sql.SQL("INSERT INTO {} (name, table_name, set_sql, where_sql, key_columns) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (name) DO NOTHING").format(cp),
            (name, table, spec.set, spec.where, [k for k, _ in keys]))
        existing = _one(conn, sql.SQL("SELECT * FROM {} WHERE name = %s").format(cp), (name,))
    state = existing if isinstance(existing, dict) else dict(zip(
        ["name", "table_name", "set_sql", "where_sql", "key_columns", "last_key", "rows_updated", "rows_scanned",
         "batches", "started_at", "updated_at", "finished_at"], existing, strict=False))
    resumed = state["batches"] > 0 and state["finished_at"] is None
    if state["finished_at"] is not None:
        return BackfillResult(
            name=name, table=table, rows_updated=state["rows_updated"], rows_scanned=state["rows_scanned"],
            batches=state["batches"], resumed=False, already_done=True, rows_updated_this_run=0,
            elapsed_s=0.0, rows_per_s=0.0, last_batch_size=0,
            remaining=_remaining(conn, table, spec) if spec.validate_end else None)
    total: float | None = float(estimate) if estimate and estimate > 0 else None
    if total is None:
        total = float(_v(_one(conn, sql.SQL("SELECT count(*) AS n FROM {}").format(sql.SQL(table))), 0, "n"))
    q_first = batch_query(table, keys, spec.set, spec.where, after=False, checkpoint=checkpoint_table)
    q_next = batch_query(table, keys, spec.set, spec.where, after=True, checkpoint=checkpoint_table)
    q_last = sql.SQL("SELECT last_key FROM {} WHERE name = %s").format(cp)
    set_timeout = sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{spec.lock_timeout_ms}ms"))
    size = spec.batch_size
    updated_now = scanned_now = retries = 0
    lag_wait = 0.0
    scanned_total = state["rows_scanned"]
    last_key: list[str] | None = state["last_key"]
    lag_checked = float("-inf")
    while True:
        if time.monotonic() - lag_checked >= LAG_CHECK_S:
            lag_wait += _wait_for_replicas(conn, spec.max_replication_lag_s, progress, scanned_total, total)
            lag_checked = time.monotonic()
        attempt = 0
        while True:
            t0 = time.monotonic()
            try:
                # BEGIN, lock_timeout, the batch with its checkpoint move, COMMIT: one round trip
                with one_trip(conn), conn.transaction():
                    conn.execute(set_timeout)
                    cur = conn.execute(q_next if last_key else q_first, batch_params(name, last_key, size))
                res = cur.fetchone()
                scanned, updated, new_last, moved = (_v(res, 0, "scanned"), _v(res, 1, "updated"),
                                                     _v(res, 2, "last_key"), _v(res, 3, "moved"))
                if not moved:
                    # another run (the procedure takes no advisory lock) moved the checkpoint: nothing was done;
                    # go on from where it is now
                    moved_to = _one(conn, q_last, (name,))
                    if moved_to is None:
                        raise InputError(f"the checkpoint of backfill {name!r} was deleted while it ran")
                    last_key = _v(moved_to, 0, "last_key")
                    continue
                break
            except psycopg.Error as exc:
                if getattr(exc, "sqlstate", None) in RETRYABLE and attempt < spec.max_retries:
                    attempt += 1
                    retries += 1
                    log.info("backfill %s: batch retried (%s)", name, exc.sqlstate)
                    time.sleep(min(5.0, 0.1 * 2 ** attempt))
                    continue
                raise
        elapsed_ms = (time.monotonic() - t0) * 1000
        if scanned == 0:
            break
        last_key = new_last
        updated_now += updated
        scanned_now += scanned
        scanned_total += scanned
        # adapt: aim at target_batch_ms, never more than double or less than half at once
        factor = max(0.5, min(2.0, spec.target_batch_ms / max(elapsed_ms, 1.0)))
        size = int(max(spec.min_batch_size, min(spec.max_batch_size, size * factor)))
        if progress:
            run_s = time.monotonic() - start
            rate = scanned_now / run_s if run_s > 0 else 0.0
            left = max(0.0, total - scanned_total) if total else 0.0
            eta = f", ETA {human_duration(left / rate)}" if rate > 0 and total else ""
            shown_total = max(total or 0.0, float(scanned_total))
            progress(float(scanned_total), shown_total,
                     f"{scanned_total:,} rows visited, {state['rows_updated'] + updated_now:,} updated, "
                     f"{rate:,.0f} rows/s{eta}")
        if spec.pause_ms:
            time.sleep(spec.pause_ms / 1000)
    elapsed = time.monotonic() - start
    final = _one(conn, sql.SQL("SELECT rows_updated, rows_scanned, batches FROM {} WHERE name = %s").format(cp),
                 (name,))
    result = BackfillResult(
        name=name, table=table, rows_updated=_v(final, 0, "rows_updated"), rows_scanned=_v(final, 1, "rows_scanned"),
        batches=_v(final, 2, "batches"), resumed=resumed, rows_updated_this_run=updated_now, elapsed_s=elapsed,
        rows_per_s=updated_now / elapsed if elapsed > 0 else 0.0, last_batch_size=size, retries=retries,
        replication_wait_s=lag_wait,
        remaining=_remaining(conn, table, spec) if spec.validate_end else None,
    )
    if progress:
        progress(float(scanned_total), float(scanned_total), f"done: {result.rows_updated:,} rows updated")
    return result


def _remaining(conn: psycopg.Connection[Any], table: str, spec: BackfillSpec) -> int | None:
    """The validation: rows still matching ``where``, every row counted (never only those a policy shows)."""
    if not spec.where:
        return None
    query = sql.SQL("SELECT count(*) AS n FROM {} WHERE ({}\n)").format(sql.SQL(table), sql.SQL(spec.where))
    row = count_every_row(conn, query, "its batches ran (the checkpoint keeps them) but it is not validated")
    return int(_v(row, 0, "n"))
