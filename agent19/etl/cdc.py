"""Change data capture in one process: a logical replication slot (wal2json or pgoutput) applied to a destination,
exactly once.

How a run works:

* First run: the slot is created over a replication connection with ``EXPORT_SNAPSHOT``; each captured
  table is copied (``COPY … TO STDOUT`` → ``COPY … FROM STDIN``) under that exported snapshot, so the copy
  holds exactly the transactions before the slot's consistent point and the slot streams exactly those
  after it. The copy and the state row commit in one destination transaction; a run killed during the copy
  leaves no state, and the next run drops the agent19 slot it finds without state and starts again.
* The first run never removes a destination row: it copies only into tables that are empty (checked before the
  slot is created, and again under an EXCLUSIVE lock in the copy's transaction, so no writer slips a row in
  between). A table with rows is refused with its exact row count and what to do — empty it through the
  confirmation protocol (``agent19 confirm 'TRUNCATE …'`` against the destination), where a human, not the
  caller, agrees to lose those rows; or point the run at empty tables.
* Then: changes are read with ``pg_logical_slot_peek_changes`` (whole transactions only), applied in one
  destination transaction together with the LSN of the last commit applied (``<state_schema>.cdc_state``),
  and only after that commit is the slot advanced (``pg_replication_slot_advance``). A run killed between
  the two re-reads those transactions next time and skips every one whose commit LSN is not above the stored
  one: nothing is lost, nothing applied twice.
* When decoding reached the WAL flushed at the start of a read (fewer changes than the batch), the slot is
  advanced to that position, not only to the last commit applied: WAL of tables not captured does not pile up
  behind a slot whose tables are quiet.
* Lag is reported in bytes (current WAL position − the slot's confirmed position) and in seconds (now − the
  commit time of the oldest transaction still waiting, 0 when caught up); WAL the slot retains is measured, and
  a warning is raised when it grows past ``retained_warn_bytes`` or when ``max_slot_wal_keep_size`` is unset.
* ``teardown`` drops the slot and the state row. A slot nobody consumes keeps every WAL segment since its
  position: never leave one behind (``max_slot_wal_keep_size`` caps the damage; the slot is then invalidated).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import BaseModel, Field

from agent19.db import catalog_first, rls
from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.etl.cdc_apply import Applied, Target, apply_change, qualified, split_table, target
from agent19.etl.cdc_first_run import (
    copy_order,
    copy_table,
    create_slot,
    require_empty,
    require_replication_role,
)
from agent19.etl.cdc_read import ChangeReader, require_publication

SLOT_PREFIX = "agent19_"
Q_STATE_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.cdc_state (
    slot            text PRIMARY KEY,
    tables          text[] NOT NULL,
    lsn             pg_lsn NOT NULL,
    changes         bigint NOT NULL DEFAULT 0,
    last_commit_at  timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
"""
Q_SLOT = """
SELECT slot_name, plugin, active, confirmed_flush_lsn::text AS confirmed,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes, wal_status,
       current_setting('max_slot_wal_keep_size') AS keep_size
  FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()
"""
Q_SAME_DATABASE = "SELECT current_database() AS db, pg_postmaster_start_time() AS started, " \
    "current_setting('port') AS port"
Progress = Callable[[float, float | None, str | None], None]


def lsn_int(lsn: str) -> int:
    hi, _, lo = lsn.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class CdcResult(BaseModel):
    slot: str
    tables: list[str]
    initial_copy: dict[str, int] = Field(default={}, description="rows copied per table on the first run")
    transactions: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    skipped_transactions: int = Field(default=0, description="already applied before a restart (not again)")
    lsn: str | None = Field(default=None, description="commit LSN of the last transaction applied")
    lag_bytes: int | None = None
    lag_s: float | None = None
    retained_wal_bytes: int | None = None
    elapsed_s: float = 0
    changes_per_s: float = 0
    caught_up: bool = False
    dropped: bool = Field(default=False, description="teardown: the slot and its state were dropped")
    warnings: list[str] = []


class CdcRun:
    def __init__(self, source: Database, dest: Connection, *, slot: str, tables: list[str], state_schema: str,
                 batch_changes: int, retained_warn_bytes: int, plugin: str = "wal2json",
                 publication: str | None = None):
        if not slot.startswith(SLOT_PREFIX) or not slot.replace("_", "").isalnum() or slot != slot.lower():
            raise InputError(f"slot name {slot!r}: agent19 names its slots {SLOT_PREFIX}... (lower case, digits, _)",
                             "e.g. --slot agent19_orders")
        if not tables:
            raise InputError("no table to capture", "name them, e.g. --tables public.orders public.customers")
        self.source, self.dest, self.slot = source, dest, slot
        self.tables = [qualified(t) for t in tables]
        self.schema = sql.Identifier(state_schema)
        self.batch = batch_changes
        self.warn_bytes = retained_warn_bytes
        self.targets: dict[str, Target] = {t: target(dest, t) for t in self.tables}
        self.reader = ChangeReader(plugin, self.tables, publication)
        self.plugin = plugin
        self.result = CdcResult(slot=slot, tables=self.tables)
        self._src: Connection | None = None

    def src(self) -> Connection:
        """A dedicated source session (autocommit) for the slot functions."""
        if self._src is None or self._src.closed:
            self._src = self.source.connect()
        return self._src

    def close(self) -> None:
        if self._src is not None:
            self._src.close()

    # -- state ---------------------------------------------------------------------------------------------
    def ensure_state(self) -> None:
        ok = self.dest.execute("SELECT to_regclass(%s) IS NOT NULL AS ok",
                               (sql.SQL("{}.cdc_state").format(self.schema).as_string(self.dest),)).fetchone()
        if not ok or not ok["ok"]:
            with self.dest.transaction():
                self.dest.execute(sql.SQL(Q_STATE_DDL).format(schema=self.schema))

    def stored_lsn(self) -> str | None:
        row = self.dest.execute(sql.SQL("SELECT lsn::text AS lsn FROM {}.cdc_state WHERE slot = %s").format(
            self.schema), (self.slot,)).fetchone()
        return row["lsn"] if row else None

    def slot_row(self) -> dict[str, Any] | None:
        with self.source.read() as conn:
            return conn.execute(Q_SLOT, (self.slot,)).fetchone()

    # -- first run -----------------------------------------------------------------------------------------
    def initial_copy(self) -> str:
        require_empty(self.dest, self.targets, self.slot)
        order = copy_order(self.dest, self.targets)  # parents first: the destination's foreign keys hold
        with self.source.read() as conn:
            if self.plugin == "pgoutput":
                require_publication(conn, self.reader.publication, self.tables)
            hidden = rls.hidden(conn, [split_table(t) for t in self.tables])
        if hidden:  # the copy would hold the rows a policy shows, the stream (decoding ignores policies) all changes
            raise InputError(f"{'; '.join(rls.message(t) for t in hidden)}: the first copy would hold only the rows "
                             "it shows. No slot was created, nothing was copied",
                             "run cdc as a login with BYPASSRLS (ALTER ROLE <login> BYPASSRLS) or as the tables' "
                             "owner (without FORCE ROW LEVEL SECURITY)")
        existing = self.slot_row()
        if existing is not None:  # ours, left by a run killed during its copy (no state was committed)
            if existing["active"]:
                raise InputError(f"slot {self.slot} is in use by another session", "stop the other consumer first")
            self.drop_slot()
        require_replication_role(self.source, "no slot was created, nothing was copied")
        repl = psycopg.connect(make_conninfo(self.source.dsn, replication="database",
                                             application_name="agent19 cdc"), autocommit=True)
        try:
            row = create_slot(self.source, repl, self.slot, self.plugin)
            consistent, snapshot = str(row[1]), str(row[2])
            with catalog_first.connect(self.source.dsn, application_name="agent19 cdc copy") as src, \
                    self.dest.transaction():
                src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                src.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                require_empty(self.dest, self.targets, self.slot, lock=True)
                self.dest.execute("SET CONSTRAINTS ALL DEFERRED")  # deferrable keys (a cycle's) at the commit
                for name in order:
                    self.result.initial_copy[name] = copy_table(src, self.dest, self.targets[name])
                self.dest.execute(sql.SQL(
                    "INSERT INTO {}.cdc_state (slot, tables, lsn) VALUES (%s, %s, %s::pg_lsn) ON CONFLICT (slot) "
                    "DO UPDATE SET tables = EXCLUDED.tables, lsn = EXCLUDED.lsn, updated_at = now()"
                ).format(self.schema),
                    (self.slot, self.tables, consistent))
                src.rollback()
        except BaseException:
            repl.close()
            if self.stored_lsn() is None:
                self.drop_slot_quietly()
            raise
        repl.close()
        return consistent

    def drop_slot(self) -> None:
        self.src().execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))

    def drop_slot_quietly(self) -> None:
        try:
            if self.slot_row() is not None:
                self.drop_slot()
        except psycopg.Error:
            pass  # the caller's error is the one to report; the next run drops the orphan

    # -- streaming -----------------------------------------------------------------------------------------
    def peek(self) -> tuple[list[dict[str, Any]], str | None]:
        """Whole transactions (at most about ``batch`` changes) committed up to the WAL flushed now; with that
        position when decoding reached it (fewer changes than the limit): nothing committed before it is left."""
        conn = self.src()
        flushed = conn.execute("SELECT pg_current_wal_flush_lsn()::text AS lsn").fetchone()
        upto = flushed["lsn"] if flushed else None
        rows, read = self.reader.peek(conn, self.slot, upto, self.batch)
        return rows, (upto if read < self.batch else None)

    def apply(self, rows: list[dict[str, Any]], stored: str | None) -> tuple[str | None, int]:
        """Apply the peeked transactions above ``stored`` in one destination transaction; returns the new LSN
        and the number of transactions skipped as already applied."""
        floor = lsn_int(stored) if stored else -1
        counts = Applied()
        last_lsn, last_at, skipped, pending = None, None, 0, []
        with self.dest.transaction():
            for row in rows:
                change = row["change"]
                action = change["action"]
                if action == "B":
                    pending = []
                elif action == "C":
                    if lsn_int(row["lsn"]) <= floor:
                        skipped += 1
                        continue
                    for ch in pending:
                        apply_change(self.dest, self.targets[f"{ch['schema']}.{ch['table']}"], ch, counts)
                    counts.transactions += 1 if pending else 0
                    last_lsn, last_at = row["lsn"], change.get("timestamp")
                elif action in ("I", "U", "D"):
                    pending.append(change)
                elif action == "T" and lsn_int(row["lsn"]) > floor:
                    self.result.warnings.append(
                        f"the source truncated {', '.join(change['tables'])}: not applied (agent19 removes no "
                        "destination rows on its own); the destination keeps those rows until you empty them "
                        "through the confirmation protocol, or tear down and copy afresh")
            if last_lsn is not None:
                self.dest.execute(sql.SQL(
                    "UPDATE {}.cdc_state SET lsn = %s::pg_lsn, changes = changes + %s, last_commit_at = %s, "
                    "updated_at = now() WHERE slot = %s").format(self.schema),
                    (last_lsn, counts.inserts + counts.updates + counts.deletes, last_at, self.slot))
        r = self.result
        r.transactions += counts.transactions
        r.inserts += counts.inserts
        r.updates += counts.updates
        r.deletes += counts.deletes
        r.skipped_transactions += skipped
        for table, columns in counts.unknown.items():
            r.warnings.append(f"changes of {table} carry column(s) the destination table lacks, not applied: "
                              f"{', '.join(sorted(columns))} (added at the source since the copy?) - if they "
                              "should be there, add them to the destination and fill them (a new first run copies "
                              "everything)")
        if counts.missing:
            r.warnings.append(f"{len(counts.missing)} update(s)/delete(s) found no destination row, e.g. "
                              f"{counts.missing[0]}: was the destination changed by hand?")
        return last_lsn, skipped

    def advance(self, lsn: str) -> None:
        self.src().execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, lsn))

    def measure(self, rows_waiting: list[dict[str, Any]]) -> None:
        slot = self.slot_row()
        if slot is None:
            return
        r = self.result
        r.lag_bytes, r.retained_wal_bytes = int(slot["lag_bytes"] or 0), int(slot["retained_bytes"] or 0)
        oldest = next((x["change"].get("timestamp") for x in rows_waiting if x["change"].get("timestamp")), None)
        r.lag_s = round(max(time.time() - _parse_ts(oldest), 0), 3) if oldest else 0.0
        if r.retained_wal_bytes > self.warn_bytes:
            r.warnings.append(f"slot {self.slot} retains {r.retained_wal_bytes:,} bytes of WAL (above "
                              f"{self.warn_bytes:,}): run the consumer more often, or tear the slot down")
        if slot["keep_size"] in ("-1", "-1MB"):
            r.warnings.append("max_slot_wal_keep_size is unset (-1): a stalled consumer keeps WAL until the disk "
                              "fills; ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf();")


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_cdc(source: Database, dest: Connection, *, slot: str, tables: list[str], state_schema: str = "agent19_etl",
            batch_changes: int = 10_000, max_seconds: float | None = None, follow: bool = False,
            teardown: bool = False, retained_warn_bytes: int = 1 << 30, progress: Progress | None = None,
            poll_s: float = 0.5, plugin: str = "wal2json", publication: str = "agent19_cdc") -> CdcResult:
    """Consume the slot and apply its changes until caught up (or, with ``follow``, until ``max_seconds``).
    ``plugin`` pgoutput reads the tables of ``publication`` (which must exist and cover them)."""
    with source.read() as src:
        here = src.execute(Q_SAME_DATABASE).fetchone()
    if not teardown and dest.execute(Q_SAME_DATABASE).fetchone() == here:
        # the slot would capture the destination's own writes: each run re-applies them (a loop that never
        # catches up, and WAL that grows with every run)
        raise InputError("the destination is the source database itself: the changes applied there would be "
                         "captured again, run after run", "point --destination at another database (env:VAR)")
    run = CdcRun(source, dest, slot=slot, tables=tables, state_schema=state_schema, batch_changes=batch_changes,
                 retained_warn_bytes=retained_warn_bytes, plugin=plugin, publication=publication)
    try:
        return _run(run, follow=follow, max_seconds=max_seconds, teardown=teardown, progress=progress, poll_s=poll_s)
    finally:
        run.close()


def _run(run: CdcRun, *, follow: bool, max_seconds: float | None, teardown: bool, progress: Progress | None,
         poll_s: float) -> CdcResult:
    r, dest, slot = run.result, run.dest, run.slot
    run.ensure_state()
    stored = run.stored_lsn()
    if teardown:
        if run.slot_row() is not None:
            run.drop_slot()
        dest.execute(sql.SQL("DELETE FROM {}.cdc_state WHERE slot = %s").format(run.schema), (slot,))
        r.dropped = True
        return r
    if stored is None:
        stored = run.initial_copy()
    else:
        require_replication_role(run.source, "nothing was read or applied")
        _require_slot(run)
    r.lsn = stored
    started = time.monotonic()
    while True:
        rows, reached = run.peek()
        if rows:
            lsn, _ = run.apply(rows, stored)
            stored = lsn or stored
            r.lsn = stored
        # after the destination committed: up to where decoding reached (WAL of other tables included, so the
        # slot keeps moving when the captured tables are quiet), else up to the last commit read
        target = reached or (rows[-1]["lsn"] if rows else None)
        if target is not None:
            run.advance(target)
        done = r.inserts + r.updates + r.deletes
        if progress is not None:
            progress(done, None, f"cdc {slot}: {r.transactions:,} transactions, {done:,} changes applied")
        out_of_time = max_seconds is not None and time.monotonic() - started >= max_seconds
        if (not rows and not follow) or out_of_time:
            r.caught_up = not rows
            break
        if not rows:
            time.sleep(poll_s)
    run.measure(run.peek()[0][:1] if not r.caught_up else [])
    r.elapsed_s = round(time.monotonic() - started, 3)
    r.changes_per_s = round((r.inserts + r.updates + r.deletes) / r.elapsed_s, 1) if r.elapsed_s else 0
    return r

def _require_slot(run: CdcRun) -> None:
    """The slot a later run reads from: there, and decoding with this run's plugin."""
    existing = run.slot_row()
    if existing is not None and existing["plugin"] != run.plugin:
        raise InputError(f"slot {run.slot} decodes with {existing['plugin']}, not {run.plugin}",
                         f"run with --plugin {existing['plugin']}, or tear it down and start again with the other")
    if existing is None:
        raise InputError(f"slot {run.slot} is gone (dropped, or invalidated by max_slot_wal_keep_size) while the "
                         "destination has its state: changes since were lost",
                         "run with teardown, empty the destination tables (agent19 confirm 'TRUNCATE ...' on the "
                         "destination), then run again: the tables are copied afresh")
