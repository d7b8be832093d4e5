"""Durations calibrated on the connected server instead of assumed.

A plan's duration is rows × (seconds per row of the work the operation does: a scan, a rewrite, an
index build, a data migration). Without a server the seconds per row are :data:`ROWS_PER_SECOND`,
assumed for a mid-size server on SSD and labelled so. With a server that allows a rolled-back
transaction (``dry-run`` or ``execute`` mode), :func:`calibrate_plan` measures them on a sample of each
table the plan works through, inside the caller's transaction that is rolled back:

rewrite         the sample is copied into a new table built ``LIKE`` the original with its indexes,
                CHECK constraints and storage settings (heap, TOAST, index entries, WAL: what a rewrite
                writes per row); timed by the server (``EXPLAIN ANALYZE``)
scan            the copy is read end to end (``SELECT count(*)``), timed by the server
index           an index on the statement's own columns is built on the copy (timed around the
                statement: ``CREATE INDEX`` has no ``EXPLAIN``)
data_migration  every row of the copy is updated once (a new row version and its index entries)

In ``read-only`` mode nothing may be written, not even rolled back: only a scan is calibrated there, by
reading the same sample of the table itself (``SELECT count(*)``, timed by the server) — the work a scan
does per row; a rewrite, an index build or a data migration keeps the assumed rate and says why.

The copy is an ordinary table in the original's schema when the login may create one there, else a
temporary table (which writes no WAL: the figure says so). Each table is measured in a savepoint that
is rolled back at once, so nothing is left and nothing is seen by other sessions. The sample is at most
:data:`SAMPLE_ROWS` rows and about :data:`SAMPLE_BYTES` (``TABLESAMPLE SYSTEM`` on larger tables): a
wide row gives a lower rate, which is the point. The measured rate then scales to the table's
``reltuples``; every figure says whether it was calibrated on this server or assumed, and what it rests on.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg
from pydantic import BaseModel

from agent19.migrate.parse import parse_sql
from agent19.migrate.patterns.sqlnames import ident, literal, qname, qualified, split_name
from agent19.migrate.planning.model import MigrationPlan, PlannedOperation
from agent19.safety import readonly
from agent19.units import human_duration

ROWS_PER_SECOND = {"scan": 1_000_000, "rewrite": 150_000, "index": 300_000, "data_migration": 20_000}
"""Throughput assumed per kind of work (rows per second) when nothing was measured."""
BRIEF_SECONDS = 0.05
"""A catalog change, once its lock is granted."""
SAMPLE_ROWS = 10_000
SAMPLE_BYTES = 16 * 1024 * 1024
MIN_SAMPLE_ROWS = 500
CALIBRATED = "calibrated on this server"
WORDS = {"scan": "full-table scan", "rewrite": "table rewrite", "index": "index build",
         "data_migration": "data migration (row updates)"}


class Rate(BaseModel):
    """A rate measured on the server for one kind of work on one table."""

    table: str
    work: str
    rows_per_second: float
    sample_rows: int
    seconds: float
    how: str
    rolled_back: bool = True

    def basis(self) -> str:
        return (f"{CALIBRATED}: {self.rows_per_second:,.0f} rows/s measured for a {WORDS[self.work]} of "
                f"{self.sample_rows:,} sampled rows of {self.table} ({self.how}"
                + (", rolled back)" if self.rolled_back else ")"))


def assumed_basis(work: str | None, rows: int | None) -> str:
    """The label of a figure nothing measured."""
    if work is None:
        return "a catalog change: brief once its lock is granted (reads and writes no rows)"
    if rows == 0:
        return "a new or empty table: no rows to work through"
    if rows is None:
        return "unknown: the table's row count is not in the catalog"
    return f"assumed ({ROWS_PER_SECOND[work]:,} rows/s for a {WORDS[work]}); not calibrated on this server"


def _value(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _server_seconds(conn: psycopg.Connection[Any], sql: str) -> float:
    """The execution time the server reports for ``sql`` (``EXPLAIN ANALYZE`` runs it)."""
    plan = _value(conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchone())
    return float(plan[0]["Execution Time"]) / 1000


def _index_columns(sql: str) -> list[str]:
    """The plain columns the statement indexes (CREATE INDEX, ADD PRIMARY KEY / UNIQUE); [] when none."""
    statements = parse_sql(sql)  # the plan's own SQL: it parsed once already
    if not statements:
        return []
    st = statements[0]
    if st.node == "IndexStmt":
        params = [p.get("IndexElem", {}) for p in st.fields.get("indexParams", [])]
        return [p["name"] for p in params if p.get("name")]
    for cmd in st.fields.get("cmds", []):
        con = cmd.get("AlterTableCmd", {}).get("def", {}).get("Constraint", {})
        keys = [k.get("String", {}).get("sval") for k in con.get("keys", [])]
        if keys and all(keys):
            return [str(k) for k in keys]
    return []


def _sample(table: str, rows: int, width: float) -> str:
    """A SELECT of at most :data:`SAMPLE_ROWS` rows (about :data:`SAMPLE_BYTES`) of ``table``."""
    want = int(min(SAMPLE_ROWS, max(MIN_SAMPLE_ROWS, SAMPLE_BYTES / max(width, 1.0))))
    sample = f"SELECT * FROM {qname(table)}"
    if rows > want:
        sample += f" TABLESAMPLE SYSTEM ({min(100.0, 150.0 * want / rows):.6f}) REPEATABLE (0)"
    # LIMIT always: ``rows`` is reltuples, which is stale after a bulk load (a table analyzed at 600 rows and
    # holding millions was read, or copied, whole)
    return f"{sample} LIMIT {want}"


def measure_read(conn: psycopg.Connection[Any], table: str, rows: int, width: float) -> Rate | None:
    """The scan rate of ``table`` from a read of its sample (read-only mode: nothing is written)."""
    sample = _sample(table, rows, width)
    secs = _server_seconds(conn, f"SELECT count(*) FROM ({sample}) s")
    sampled = int(_value(conn.execute(f"SELECT count(*) FROM ({sample}) s").fetchone()))
    if sampled == 0:
        return None
    return Rate(table=table, work="scan", rows_per_second=sampled / max(secs, 1e-6), sample_rows=sampled,
                seconds=secs, how=f"read in {secs * 1000:.1f} ms, nothing written", rolled_back=False)


class _Copy:
    """A sample of a table copied into a new table of the same shape, inside a savepoint."""

    def __init__(self, conn: psycopg.Connection[Any], table: str, rows: int, width: float) -> None:
        self.conn, self.table = conn, table
        self.source = qname(table)
        self.sample = _sample(table, rows, width)
        self.name, self.temporary = self._create()

    def _create(self) -> tuple[str, bool]:
        schema, _ = split_name(self.table)
        name = f"agent19_calibration_{secrets.token_hex(4)}"
        like = f"(LIKE {self.source} INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE)"
        if schema:
            try:
                with self.conn.transaction():
                    self.conn.execute(f"CREATE TABLE {qualified(schema, name)} {like}")
                return qualified(schema, name), False
            except psycopg.errors.InsufficientPrivilege:
                pass  # no CREATE on the schema: a temporary table (no WAL), said in the figure
        self.conn.execute(f"CREATE TEMPORARY TABLE {ident(name)} {like}")
        return f"pg_temp.{ident(name)}", True

    def fill(self) -> tuple[int, float]:
        seconds = _server_seconds(self.conn, f"INSERT INTO {self.name} {self.sample}")
        return int(_value(self.conn.execute(f"SELECT count(*) FROM {self.name}").fetchone())), seconds

    def first_column(self) -> str:
        return str(_value(self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(" + literal(self.name) + ") "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT 1").fetchone()))

    def indexes(self) -> int:
        return int(_value(self.conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass(" + literal(self.name) + ")").fetchone()))


def measure(conn: psycopg.Connection[Any], table: str, works: dict[str, str], rows: int, width: float
            ) -> dict[str, Rate]:
    """Rates for ``works`` (work → the statement's SQL) on a sample of ``table``; ``conn`` is in a transaction
    the caller rolls back. The copy lives in a savepoint rolled back before returning."""
    out: dict[str, Rate] = {}
    with conn.transaction(force_rollback=True):
        copy = _Copy(conn, table, rows, width)
        sampled, seconds = copy.fill()
        if sampled == 0:
            return {}
        wal = " (a temporary table: no WAL written, so the real work is slower)" if copy.temporary else ""
        indexes = copy.indexes()

        def rate(work: str, secs: float, how: str) -> None:
            out[work] = Rate(table=table, work=work, rows_per_second=sampled / max(secs, 1e-6),
                             sample_rows=sampled, seconds=secs, how=how + wal)

        rate("rewrite", seconds, f"copied with its {indexes} index(es) in {seconds * 1000:.1f} ms")
        if "scan" in works:
            secs = _server_seconds(conn, f"SELECT count(*) FROM {copy.name}")
            rate("scan", secs, f"read in {secs * 1000:.1f} ms")
        if "index" in works:
            columns = _index_columns(works["index"]) or [copy.first_column()]
            started = time.perf_counter()
            conn.execute(f"CREATE INDEX ON {copy.name} ({', '.join(ident(c) for c in columns)})")
            secs = time.perf_counter() - started
            rate("index", secs, f"indexed on {', '.join(columns)} in {secs * 1000:.1f} ms")
        if "data_migration" in works:
            col = ident(copy.first_column())
            secs = _server_seconds(conn, f"UPDATE {copy.name} SET {col} = {col}")
            rate("data_migration", secs, f"every row updated in {secs * 1000:.1f} ms")
    return out


def _row_width(conn: psycopg.Connection[Any], table: str) -> float:
    """Bytes per row on disk (heap and TOAST ÷ reltuples), for sizing the sample."""
    value = _value(conn.execute(
        "SELECT CASE WHEN c.reltuples > 0 THEN pg_table_size(c.oid) / c.reltuples END "
        "FROM pg_class c WHERE c.oid = to_regclass(" + literal(qname(table)) + ")").fetchone())
    return float(value) if value else 100.0


def guarded(conn: psycopg.Connection[Any], table: str, *, copied: bool = True) -> None:
    """Refuse to sample ``table`` when reading it (or copying it: a copy built with its indexes and CHECKs evaluates
    them for every row) runs code its owner wrote that a read may not run, as this login: index expressions and
    predicates the planner folds, statistics objects, partition keys, CHECKs, policies
    (:func:`agent19.safety.readonly.check_relations_read`); ``copied``: the sample is copied, every call of the
    copied definitions runs (their volatile ones too)."""
    readonly.check_relations_read(conn, readonly.relation_oids(conn, [qname(table)]), rows_written=copied)


def sampled_tables(plan: MigrationPlan, writes: bool = True) -> dict[str, dict[str, str]]:
    """The tables :func:`calibrate_plan` samples for ``plan``: table → work → the first statement doing it. None
    (nothing to measure: no estimated work through rows, or in read-only mode no scan) needs no session at all."""
    wanted: dict[str, dict[str, str]] = {}
    for op in plan.operations:
        if op.figures == "estimated" and op.work and op.table and op.estimated_rows and (writes or op.work == "scan"):
            wanted.setdefault(op.table, {}).setdefault(op.work, op.sql)
    return wanted


def calibrate_plan(conn: psycopg.Connection[Any] | None, plan: MigrationPlan, writes: bool = True) -> MigrationPlan:
    """``plan`` with the duration of every operation that works through rows calibrated on the server.

    ``conn`` must be in a read-write transaction that the caller rolls back (``Database.rolled_back``); with
    ``writes=False`` (read-only mode) it may be a READ ONLY one, and only scans are calibrated (by a read).
    None when :func:`sampled_tables` is empty (then only the labels change). Observed figures (from a dry run)
    are kept. A table that cannot be sampled keeps the assumed rate and says why.
    """
    wanted = sampled_tables(plan, writes)
    rates: dict[tuple[str, str], Rate] = {}
    failed: dict[str, str] = {}
    if wanted:
        if conn is None:
            raise ValueError("calibrate_plan: tables to sample and no connection to sample them with")
        rates, failed = _measure_tables(conn, plan, wanted, writes)
    operations = [_apply(op, rates, failed, writes) for op in plan.operations]
    return _with_totals(plan, operations)


def _measure_tables(conn: psycopg.Connection[Any], plan: MigrationPlan, wanted: dict[str, dict[str, str]],
                    writes: bool) -> tuple[dict[tuple[str, str], Rate], dict[str, str]]:
    """The rates measured on each wanted table's sample, and the tables that could not be sampled (why)."""
    rates: dict[tuple[str, str], Rate] = {}
    failed: dict[str, str] = {}
    for table, works in wanted.items():
        rows = max(op.estimated_rows or 0 for op in plan.operations if op.table == table)
        try:
            with conn.transaction():
                guarded(conn, table, copied=writes)
                width = _row_width(conn, table)
                if writes:
                    rates.update({(table, w): r for w, r in measure(conn, table, works, rows, width).items()})
                elif (read := measure_read(conn, table, rows, width)) is not None:
                    rates[(table, "scan")] = read
        except psycopg.Error as exc:  # the table keeps its assumed rate; the label says why
            failed[table] = f"calibration failed: {str(exc).strip().splitlines()[0]}"
        except readonly.ReadOnlyViolation as exc:
            failed[table] = f"not sampled: {exc.what}"
    return rates, failed


def _apply(op: PlannedOperation, rates: dict[tuple[str, str], Rate], failed: dict[str, str],
           writes: bool = True) -> PlannedOperation:
    if op.figures != "estimated" or not op.work or not op.table or not op.estimated_rows:
        return op
    rate = rates.get((op.table, op.work))
    if rate is None:
        why = failed.get(op.table, "the sample had no rows") if writes or op.work == "scan" else (
            f"read-only mode: measuring a {WORDS[op.work]} needs a write, even one rolled back")
        return op.model_copy(update={"duration_basis": f"{assumed_basis(op.work, op.estimated_rows)} ({why})"})
    return op.model_copy(update={
        "figures": "calibrated", "duration_basis": rate.basis(),
        "estimated_seconds": BRIEF_SECONDS + op.estimated_rows / rate.rows_per_second,
    })


def _with_totals(plan: MigrationPlan, operations: list[PlannedOperation]) -> MigrationPlan:
    calibrated = [o for o in operations if o.figures == "calibrated"]
    if not calibrated:
        return plan.model_copy(update={"operations": operations})
    seconds = sum(o.estimated_seconds or 0 for o in operations)
    assumed = [o for o in operations if o.figures == "estimated" and o.work and o.estimated_rows]
    observed = [o for o in operations if o.figures == "observed"]
    parts = [f"{len(calibrated)} operation(s) {CALIBRATED} (" + "; ".join(
        f"{o.order}: {o.duration_basis.split(': ', 1)[1].split(' measured')[0]}" for o in calibrated
        if o.duration_basis) + ")"]
    if observed:
        parts.append(f"{len(observed)} observed in the {plan.observed_in or 'dry run'}")
    if assumed:
        parts.append(f"{len(assumed)} assumed (" + ", ".join(
            f"{o.order}: {ROWS_PER_SECOND[o.work]:,} rows/s" for o in assumed if o.work) + ")")
    text = f"~{human_duration(seconds)}: {', '.join(parts)} (plus lock waits)"
    return plan.model_copy(update={"operations": operations, "estimated_seconds": seconds,
                                   "estimated_duration": text})
