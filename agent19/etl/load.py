"""Loading a batch into the destination, exactly once.

One destination transaction per batch holds: the batch's rows, its dead letters, and the move of the
pipeline's watermark (a row of ``<state_schema>.watermark``). The rows go by COPY straight into the table
for append and replace, and for upsert and merge while batches hold only new keys (in a savepoint: one key
that exists undoes that attempt only); otherwise by COPY into a temporary staging table, then the upsert
below. A run killed at any moment leaves all of them
or none: the next run starts after the last committed watermark, so no row is lost and none loaded twice.

Upsert: one statement UPDATEs the staged rows whose key exists and whose values differ, and INSERTs those
whose key is new (no speculative insertion: faster than ON CONFLICT, on every version); should another
session insert one of the keys meanwhile (a unique violation), the batch runs ``INSERT … ON CONFLICT (key)
DO UPDATE … WHERE the row changed`` instead. Counts: inserted, updated, unchanged (staged − both). The
statements, and how rows of one batch with the same key collapse, are in :mod:`agent19.etl.load_sql`.

A session advisory lock on the destination (keyed by the pipeline's name) keeps two runs of one
pipeline apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from agent19.db.connection import Connection
from agent19.errors import InputError
from agent19.etl.extract import split_name
from agent19.etl.load_sql import SEQ, STAGE, merge_into, on_conflict, update_insert

Q_STATE_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.watermark (
    pipeline        text PRIMARY KEY,
    cursor_columns  text[] NOT NULL,
    cursor_values   text[] NOT NULL,
    source_columns  jsonb,
    rows_loaded     bigint NOT NULL DEFAULT 0,
    rows_rejected   bigint NOT NULL DEFAULT 0,
    batches         bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    target          text
);
CREATE TABLE IF NOT EXISTS {schema}.dead_letter (
    pipeline    text NOT NULL,
    source_key  jsonb NOT NULL,
    reason      text NOT NULL,
    record      jsonb NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    seen        integer NOT NULL DEFAULT 1,
    PRIMARY KEY (pipeline, source_key)
);
"""
Q_COLUMNS = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""
Q_NAME = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)
"""
Q_UNIQUE = """
SELECT ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = i.indrelid
             AND a.attnum = k ORDER BY a.attname)::text[] AS cols
  FROM pg_index i WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL
   AND i.indexprs IS NULL AND i.indisvalid
"""


def lock_key(pipeline: str) -> int:
    return int.from_bytes(hashlib.sha256(b"agent19-etl:" + pipeline.encode()).digest()[:8], "big", signed=True)


@dataclass
class BatchCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    resolved: int = 0


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Loader:
    """The destination side of a run: one dedicated session (its staging table lives in it)."""

    def __init__(self, conn: Connection, *, pipeline: str, table: str, key: list[str], strategy: str,
                 state_schema: str, columns: list[str]):
        self.conn = conn
        self.pipeline = pipeline
        self.table = sql.Identifier(*split_name(table))
        self.table_name = table
        self.key = key
        self.strategy = strategy
        self.schema = sql.Identifier(state_schema)
        self.columns = columns
        self.json_columns: set[str] = set()
        self.has_dead_letters = False
        self.stored_cursor: list[str] | None = None
        """The cursor columns of the stored watermark (read by :meth:`watermark`)."""
        self.stored_target: str | None = None
        self.target: str | None = None
        """What the pipeline loads, ``source → destination`` as the catalogs name them: stored with the watermark
        (a pipeline of the same name loading something else must not start where this one stopped)."""
        self.has_target = False
        self.only_new = True
        """Upsert tries a plain INSERT first while batches hold only new keys (see :meth:`_upsert`)."""

    # -- set-up ------------------------------------------------------------------------------------------
    def destination_columns(self) -> dict[str, str]:
        rows = self.conn.execute(Q_COLUMNS, (self.table.as_string(self.conn),)).fetchall()
        if not rows:
            raise InputError(f"the destination table {self.table_name} does not exist (or this login cannot see it)",
                             "create it first (agent19 loads into an existing table; its key needs a unique index)")
        return {r["name"]: r["type"] for r in rows}

    def prepare(self) -> None:
        """Check the destination, create the state tables when missing, take the run's lock, make the stage."""
        have = self.destination_columns()
        self.json_columns = {c for c in self.columns if have.get(c) in ("json", "jsonb")}
        missing = [c for c in self.columns + self.key if c not in have]
        if missing:
            raise InputError(f"the destination {self.table_name} has no column(s) {sorted(set(missing))}",
                             "add them to the table, or leave them out of [transform]")
        if self.strategy == "merge":
            version = self.conn.execute("SELECT current_setting('server_version_num')::int AS v").fetchone()
            if version and version["v"] < 150000:
                raise InputError(f"strategy merge needs PostgreSQL 15 or later; the destination runs "
                                 f"{version['v'] // 10000}", "use strategy = \"upsert\" (the same result)")
        if self.strategy in ("upsert", "merge"):
            uniques = [sorted(r["cols"]) for r in self.conn.execute(Q_UNIQUE, (self.table.as_string(self.conn),))]
            if sorted(self.key) not in uniques:
                raise InputError(f"upsert into {self.table_name} needs a unique index or primary key on exactly "
                                 f"({', '.join(self.key)})",
                                 f"CREATE UNIQUE INDEX CONCURRENTLY ON {self.table.as_string(self.conn)} "
                                 f"({', '.join(sql.Identifier(k).as_string(self.conn) for k in self.key)})")
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (lock_key(self.pipeline),)).fetchone()
        if not got or not got["ok"]:
            raise InputError(f"another run of pipeline {self.pipeline!r} holds its lock on the destination",
                             "wait for it to finish; two runs of one pipeline would extract the same rows")
        ready = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL AS ok", (
            sql.SQL("{}.watermark").format(self.schema).as_string(self.conn),
            sql.SQL("{}.dead_letter").format(self.schema).as_string(self.conn))).fetchone()
        if not ready or not ready["ok"]:  # created once, by a login that may (later runs need no CREATE)
            try:
                with self.conn.transaction():
                    self.conn.execute(sql.SQL(Q_STATE_DDL).format(schema=self.schema))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise InputError(f"this login cannot create the pipeline's state tables in the destination "
                                 f"({exc.diag.message_primary})",
                                 "GRANT CREATE ON DATABASE <destination> TO <login> once, or have an owner run "
                                 "the pipeline first (later runs only write rows)") from None
        self._add_target()
        found = self.conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.dead_letter WHERE pipeline = %s) AS any"
                                          ).format(self.schema), (self.pipeline,)).fetchone()
        self.has_dead_letters = bool(found and found["any"])
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        # the sequence number is the order rows were staged in (the cursor order): the last of one key wins
        self.conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                                  "SELECT {cols} FROM {table} WITH NO DATA; ALTER TABLE {stage} ADD COLUMN IF NOT "
                                  "EXISTS {seq} bigint GENERATED ALWAYS AS IDENTITY").format(
            stage=sql.Identifier(STAGE), cols=cols, seq=sql.Identifier(SEQ), table=self.table))

    def _add_target(self) -> None:
        """State tables made before the ``target`` column get it when this login may (else it stays unchecked)."""
        has = self.conn.execute("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass(%s) AND "
                                "attname = 'target' AND NOT attisdropped) AS ok",
                                (sql.SQL("{}.watermark").format(self.schema).as_string(self.conn),)).fetchone()
        self.has_target = bool(has and has["ok"])
        if not self.has_target:
            try:
                with self.conn.transaction():
                    self.conn.execute(sql.SQL("ALTER TABLE {}.watermark ADD COLUMN IF NOT EXISTS target text"
                                              ).format(self.schema))
                self.has_target = True
            except psycopg.errors.InsufficientPrivilege:
                pass

    def identity(self) -> str:
        """The destination table as the catalog names it (schema.table, quoted where needed)."""
        row = self.conn.execute(Q_NAME, (self.table.as_string(self.conn),)).fetchone()
        return row["name"] if row else self.table_name

    def watermark(self) -> tuple[list[str] | None, dict[str, str] | None]:
        """The stored cursor (text values) and source columns of the last run, or (None, None); the cursor
        columns those values are of in :attr:`stored_cursor`, what they were loaded from and into in
        :attr:`stored_target` (None before state tables had it)."""
        row = self.conn.execute(sql.SQL("SELECT cursor_columns, cursor_values, source_columns, to_jsonb(w) ->> "
                                        "'target' AS target FROM {}.watermark w WHERE pipeline = %s"
                                        ).format(self.schema), (self.pipeline,)).fetchone()
        self.stored_cursor = list(row["cursor_columns"]) if row else None
        self.stored_target = row["target"] if row else None
        return (row["cursor_values"], row["source_columns"]) if row else (None, None)

    # -- one batch ---------------------------------------------------------------------------------------
    def load(self, rows: list[tuple[Any, ...]], dead: list[tuple[Any, str, Any]], cursor_columns: list[str],
             cursor_values: list[Any], source_columns: dict[str, str],
             loaded_keys: list[dict[str, Any]] | None = None) -> BatchCounts:
        """Rows (in ``columns`` order), dead letters (source key, reason, record) and the new watermark in
        one transaction. The dead letters of records that now loaded (``loaded_keys``) are removed: the table
        lists what is still wrong."""
        with self.conn.transaction():
            counts = self._direct(lambda copy: self._write(copy, rows), len(rows)) if rows else BatchCounts()
            if rows and counts.inserted == 0:
                self._stage(rows)
                counts = self._merge(len(rows))
            counts.rejected = len(dead)
            if loaded_keys and self.has_dead_letters:
                cur = self.conn.execute(sql.SQL("DELETE FROM {}.dead_letter WHERE pipeline = %s AND source_key = "
                                                "ANY(%s::jsonb[])").format(self.schema),
                                        (self.pipeline, [Jsonb(_jsonable(k)) for k in loaded_keys]))
                counts.resolved = cur.rowcount
            self._dead(dead)
            self._mark(cursor_columns, cursor_values, source_columns, counts)
        return counts

    def load_copy(self, chunks: list[bytes], staged: int, cursor_columns: list[str], cursor_values: list[Any],
                  source_columns: dict[str, str]) -> BatchCounts:
        """The fast path without a transform: COPY text rows (``columns``) as read from the source go into the
        staging table, then merge and the watermark, in one transaction (or straight into the table, see
        :meth:`_direct`)."""

        def send(copy: Any) -> None:
            for chunk in chunks:
                copy.write(chunk)

        with self.conn.transaction():
            counts = self._direct(send, staged) if staged else BatchCounts()
            if staged and counts.inserted == 0:
                with self.conn.cursor() as cur, cur.copy(self._copy_into(sql.Identifier(STAGE))) as copy:
                    send(copy)
                counts = self._merge(staged)
            self._mark(cursor_columns, cursor_values, source_columns, counts)
        return counts

    def _merge(self, staged: int) -> BatchCounts:
        if not staged:
            return BatchCounts()
        if self.strategy == "upsert":
            return self._upsert(staged)
        assert self.strategy == "merge", "append and replace load by COPY (_direct)"
        return self._merge_into(staged)

    def empty_for_replace(self) -> int:
        """Strategy replace, first thing in the run's one transaction: ACCESS EXCLUSIVE on the destination (readers
        wait for the commit and then see the new rows: never an empty table), its rows counted, then TRUNCATE."""
        self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(self.table))
        row = self.conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(self.table)).fetchone()
        self.conn.execute(sql.SQL("TRUNCATE {}").format(self.table))
        return int(row["n"]) if row else 0

    def _dead(self, dead: list[tuple[Any, str, Any]]) -> None:
        self.has_dead_letters = self.has_dead_letters or bool(dead)
        for key, reason, record in dead:
            self.conn.execute(sql.SQL(
                "INSERT INTO {}.dead_letter AS d (pipeline, source_key, reason, record) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (pipeline, source_key) DO UPDATE SET reason = EXCLUDED.reason, "
                "record = EXCLUDED.record, last_seen = now(), seen = d.seen + 1").format(self.schema),
                (self.pipeline, Jsonb(_jsonable(key)), reason, Jsonb(_jsonable(record))))

    def _mark(self, cursor_columns: list[str], cursor_values: list[Any], source_columns: dict[str, str],
              counts: BatchCounts) -> None:
        target = self.has_target and self.target is not None
        self.conn.execute(sql.SQL(
            "INSERT INTO {}.watermark AS w (pipeline, cursor_columns, cursor_values, source_columns, rows_loaded, "
            "rows_rejected, batches{}) VALUES (%s, %s, ARRAY[{}]::text[], %s, %s, %s, 1{}) "
            "ON CONFLICT (pipeline) DO UPDATE SET cursor_columns = EXCLUDED.cursor_columns, "
            "cursor_values = EXCLUDED.cursor_values, source_columns = EXCLUDED.source_columns, "
            "rows_loaded = w.rows_loaded + EXCLUDED.rows_loaded, "
            "rows_rejected = w.rows_rejected + EXCLUDED.rows_rejected, batches = w.batches + 1, "
            "updated_at = now(){}").format(self.schema, sql.SQL(", target" if target else ""), sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Literal(v)) for v in cursor_values),
                sql.SQL(", {}").format(sql.Literal(self.target)) if target else sql.SQL(""),
                sql.SQL(", target = EXCLUDED.target" if target else "")),
            (self.pipeline, cursor_columns, Jsonb(source_columns), counts.inserted + counts.updated,
             counts.rejected))

    def _copy_into(self, table: sql.Composable) -> sql.Composable:
        """``COPY`` of ``columns`` into ``table`` (the staging table numbers the rows itself)."""
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        return sql.SQL("COPY {} ({}) FROM STDIN").format(table, cols)

    def _write(self, copy: Any, rows: list[tuple[Any, ...]]) -> None:
        if self.json_columns:
            for row in rows:
                copy.write_row(tuple(Jsonb(v) if isinstance(v, dict | list) else v for v in row))
        else:
            for row in rows:
                copy.write_row(row)

    def _stage(self, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur, cur.copy(self._copy_into(sql.Identifier(STAGE))) as copy:
            self._write(copy, rows)

    def _direct(self, send: Callable[[Any], None], staged: int) -> BatchCounts:
        """While batches hold only new keys (a first load, an append-mostly source) and for append: COPY straight
        into the destination, as a raw COPY does — no staging, no statement over it. For upsert and merge in a
        savepoint: a key that exists (or twice in the batch) raises a unique violation, which undoes the
        attempt only, and this batch and the next ones take the staging path. Returns no counts then."""
        if self.strategy in ("append", "replace"):
            with self.conn.cursor() as cur, cur.copy(self._copy_into(self.table)) as copy:
                send(copy)
            return BatchCounts(inserted=staged)
        if not self.only_new:
            return BatchCounts()
        try:
            with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(self._copy_into(self.table)) as copy:
                send(copy)
        except psycopg.errors.UniqueViolation:
            self.only_new = False
            return BatchCounts()
        return BatchCounts(inserted=staged)

    def _upsert(self, staged: int) -> BatchCounts:
        try:
            with self.conn.transaction():  # a savepoint: the faster statement first
                # by key through the unique index: a hash join would read the whole destination for each batch
                self.conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                row = self.conn.execute(update_insert(self.table, self.columns, self.key)).fetchone()
        except psycopg.errors.UniqueViolation:  # a concurrent writer inserted one of these keys meanwhile
            row = self.conn.execute(on_conflict(self.table, self.columns, self.key)).fetchone()
        assert row is not None
        inserted, updated = int(row["inserted"]), int(row["updated"])
        self.only_new = inserted == staged
        return BatchCounts(inserted=inserted, updated=updated, unchanged=staged - inserted - updated)

    def _merge_into(self, staged: int) -> BatchCounts:
        """Strategy merge (15+): one MERGE that updates the rows that changed and inserts new keys. MERGE on 15
        and 16 cannot say which rows it inserted: the new keys are counted first, in the same transaction."""
        count_new, merge = merge_into(self.table, self.columns, self.key)
        new = self.conn.execute(count_new).fetchone()
        try:
            with self.conn.transaction():
                self.conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                cur = self.conn.execute(merge)
        except psycopg.errors.UniqueViolation:  # a concurrent writer inserted one of these keys meanwhile
            row = self.conn.execute(on_conflict(self.table, self.columns, self.key)).fetchone()
            assert row is not None
            inserted, updated = int(row["inserted"]), int(row["updated"])
            return BatchCounts(inserted=inserted, updated=updated, unchanged=staged - inserted - updated)
        inserted = int(new["n"]) if new else 0
        updated = max(cur.rowcount - inserted, 0)
        self.only_new = inserted == staged
        return BatchCounts(inserted=inserted, updated=updated, unchanged=staged - inserted - updated)
