"""One run of a pipeline, batch by batch: the extractor and loader it holds, validation, and one batch's step.

:mod:`agent19.etl.batch` drives the incremental strategies with these, :mod:`agent19.etl.replace` strategy replace.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import psycopg
from pydantic import BaseModel, ValidationError

from agent19.db.connection import Connection, Database
from agent19.errors import DatabaseUnavailable, InputError
from agent19.etl.extract import Extractor, Prefetch, SourceShape
from agent19.etl.load import BatchCounts, Loader
from agent19.etl.outcome import EtlResult, Rejection
from agent19.etl.pipeline import Pipeline, error_reason, parse_lag
from agent19.migrate.patterns.sqlnames import qualified
from agent19.units import human_duration

log = logging.getLogger(__name__)

TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
Progress = Callable[[float, float | None, str | None], None]


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable | psycopg.OperationalError):
        return not (isinstance(exc, psycopg.Error) and exc.sqlstate == "57014")  # a statement timeout is not
    return isinstance(exc, psycopg.Error) and exc.sqlstate in TRANSIENT_SQLSTATES



def release_session_locks(conn: Connection) -> None:
    """Release the session's advisory locks (the pipeline's run lock) before its connection is closed: a closed
    connection's server process lets them go only as it exits, after the client has moved on, so the next run of
    the pipeline, started at once, found the lock still held ("another run … holds its lock"). Best effort: a
    session that is already broken holds nothing once it is gone, which the close then makes sure of."""
    try:
        if conn.closed:
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.execute("SELECT pg_advisory_unlock_all()")
    except psycopg.Error as exc:
        log.debug("advisory locks left to the session's end: %s", exc)

class Run:
    def __init__(self, pipeline: Pipeline, source: Database, destination: Database, model: type[BaseModel] | None,
                 dry_run: bool, progress: Progress | None, max_rejections: int, flat: bool = False):
        self.p = pipeline
        self.model = model
        self.flat = flat
        """The model is the pipeline's own ([transform]): scalar fields, read as attributes (model_dump, which a
        library caller's model with nested models needs, costs about five times the validation itself)."""
        self.dry_run = dry_run
        self.progress = progress
        self.max_rejections = max_rejections
        self.dest_db = destination
        self.extractor = Extractor(source, table=pipeline.source.table, query=pipeline.source.query,
                                   cursor=pipeline.source.cursor)
        self.shape: SourceShape = self.extractor.shape()
        self.source_identity = self.extractor.identity()
        _check_lag(pipeline, self.shape)
        self.key = pipeline.source_key() or pipeline.source.cursor
        self.conn: Connection | None = None
        self.loader: Loader | None = None
        self._prefetch: Prefetch | None = None
        self.result = EtlResult(pipeline=pipeline.name, dry_run=dry_run, strategy=pipeline.destination.strategy,
                                destination_table=pipeline.destination.table)

    def columns(self, dest_columns: dict[str, str]) -> list[str]:
        if self.model is not None:
            return list(self.model.model_fields)
        return [c for c in self.shape.columns if c in dest_columns]

    def open_destination(self) -> Loader:
        d = self.p.destination
        self.conn = self.dest_db.connect()
        probe = Loader(self.conn, pipeline=self.p.name, table=d.table, key=d.key, strategy=d.strategy,
                       state_schema=d.state_schema, columns=[])
        columns = self.columns(probe.destination_columns())
        loader = Loader(self.conn, pipeline=self.p.name, table=d.table, key=d.key, strategy=d.strategy,
                        state_schema=d.state_schema, columns=columns)
        loader.target = f"{self.source_identity} -> {loader.identity()}"
        if not self.dry_run:
            loader.prepare()
        self.loader = loader
        return loader

    def stored(self, loader: Loader, *, resume: bool = True) -> tuple[list[str] | None, dict[str, str] | None]:
        """The stored watermark and source columns. ``resume``: the run continues from it, so it must be of the
        pipeline's cursor columns (values of other columns would be read as these: rows skipped or a crash)."""
        assert self.conn is not None
        exists = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok",
                                   (f"{loader.schema.as_string(self.conn)}.watermark",)).fetchone()
        values, columns = loader.watermark() if exists and exists["ok"] else (None, None)
        cursor = self.p.source.cursor
        if resume and values is not None and loader.stored_cursor != cursor:
            old, state = ", ".join(loader.stored_cursor or []), self.p.destination.state_schema
            raise InputError(
                f"pipeline {self.p.name}'s watermark in {state}.watermark is a position on ({old}), and its cursor "
                f"is now ({', '.join(cursor)}): the stored values say nothing about where ({', '.join(cursor)}) "
                "stands, so nothing was read or written",
                f"put the cursor back to {json.dumps(loader.stored_cursor, ensure_ascii=False)}; or start this "
                f"pipeline again from the beginning under the new cursor: DELETE FROM "
                f"{qualified(state, 'watermark')} WHERE pipeline = '{self.p.name}' (upsert then reads every row "
                "again, unchanged ones are not rewritten); or give the pipeline a new name")
        if resume and values is not None and loader.stored_target not in (None, loader.target):
            state = qualified(self.p.destination.state_schema, "watermark")
            raise InputError(
                f"pipeline {self.p.name}'s watermark in {state} is where loading {loader.stored_target} stopped, and "
                f"this pipeline loads {loader.target}: a pipeline's name is its watermark, so this run would start "
                "there and skip rows; nothing was read or written",
                f"give this pipeline a name of its own; or, if it is the same data under another name (a table "
                f"renamed or moved), let the watermark follow: UPDATE {state} SET target = NULL WHERE pipeline = "
                f"'{self.p.name}'")
        return values, columns

    @property
    def fast(self) -> bool:
        return self.model is None and not self.dry_run

    def prefetch(self, loader: Loader) -> Prefetch:
        if self._prefetch is None:
            ex, shape, size = self.extractor, self.shape, self.p.batch_size
            columns = loader.columns

            def fetch(after: list[Any] | None, since: Any | None) -> Any:
                if not self.fast:
                    return ex.batch(shape, after, size, since)
                chunks: list[bytes] = []
                n, last = ex.copy_batch(shape, columns, after, size, since, chunks.append)
                return n, last, chunks

            self._prefetch = Prefetch(fetch)
        return self._prefetch

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None
        if self.conn is not None:
            release_session_locks(self.conn)
            self.conn.close()  # the session's staging table goes with it
            self.conn = None

    def validate(self, rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[tuple[Any, ...]],
                                                                               list[tuple[Any, str, Any]]]:
        good: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, str, Any]] = []
        if self.model is None:
            return [tuple(row.get(c) for c in columns) for row in rows], dead
        validate = self.model.model_validate
        fields = attrgetter(*columns) if self.flat and len(columns) > 1 else None
        for row in rows:
            try:
                if fields is not None:
                    good.append(fields(validate(row)))
                    continue
                record = validate(row).model_dump()
            except ValidationError as exc:
                key = {k: row.get(k) for k in self.key}
                dead.append((key, error_reason(exc), row))
                if len(self.result.rejections) < self.max_rejections:
                    self.result.rejections.append(Rejection(source_key=key, reason=error_reason(exc)))
                continue
            good.append(tuple(record[c] for c in columns))
        return good, dead

    def report(self, done: int, total: int, started: float) -> None:
        rate = done / max(time.monotonic() - started, 1e-6)
        eta = human_duration(max(total - done, 0) / rate) if rate > 0 else "?"
        message = f"{self.p.name}: {done:,}/{total:,} rows, {rate:,.0f} rows/s, ETA {eta}"
        log.info(message)
        if self.progress is not None:
            self.progress(done, max(total, done), message)


_TIMES = ("date", "timestamp")
_NUMBERS = ("smallint", "integer", "bigint", "numeric", "real", "double precision")


def _check_lag(p: Pipeline, shape: SourceShape) -> None:
    """A lag that cannot apply to the first cursor column is refused on the first run, not after it loaded."""
    lag = parse_lag(p.source.lag)
    if lag is None:
        return
    column = p.source.cursor[0]
    kind = shape.columns.get(column, "")
    fits = kind.startswith(_TIMES) if isinstance(lag, dt.timedelta) else kind.startswith(_NUMBERS)
    if not fits:
        raise InputError(f"lag {p.source.lag!r} does not fit the cursor column {column} ({kind}); nothing was read "
                         "or written", "a duration (lag = \"10 minutes\") for a timestamp or date cursor, a number "
                         "(lag = 100) for a numeric one")


def minus(value: Any, lag: Any, column: str) -> Any:
    """The watermark's first cursor value minus the lag, in the column's own type."""
    try:
        return value - (decimal.Decimal(str(lag)) if isinstance(value, decimal.Decimal) else lag)
    except (TypeError, decimal.InvalidOperation):
        raise InputError(f"lag {lag!r} does not fit the cursor column {column} ({type(value).__name__})",
                         "a duration (\"10 minutes\") for a timestamp or date cursor, a number for a numeric one"
                         ) from None


def _order(values: list[Any]) -> tuple[tuple[Any, ...], ...]:
    """Cursor values as PostgreSQL orders them: 'infinity' (read as text) above every timestamp, '-infinity' below."""
    rank = {"-infinity": (0,), "infinity": (2,)}
    return tuple(rank[v] if isinstance(v, str) and v in rank else (1, v) for v in values)


def _higher(last: list[Any], high: list[Any] | None) -> list[Any]:
    return last if high is None or _order(last) > _order(high) else high


def step(run: Run, loader: Loader, after: list[Any] | None, since: Any, high: list[Any] | None
          ) -> tuple[int, list[Any] | None, list[Any] | None, BatchCounts]:
    """One batch: (rows extracted, their last cursor, the new watermark, counts)."""
    p = run.p
    pre = run.prefetch(loader)
    if run.fast:  # nothing to validate: COPY → staging, no row parsed in Python
        n, last, chunks = pre.get(after, since)
        if n == p.batch_size:
            pre.ahead(last, None)
        if not n or last is None:
            return 0, None, high, BatchCounts()
        new_high = _higher(last, high)
        return n, last, new_high, loader.load_copy(chunks, n, p.source.cursor, new_high, run.shape.columns)
    rows = pre.get(after, since)
    if not rows:
        return 0, None, high, BatchCounts()
    last = [rows[-1][c] for c in p.source.cursor]
    if len(rows) == p.batch_size:
        pre.ahead(last, None)
    good, dead = run.validate(rows, loader.columns)
    new_high = _higher(last, high)
    if run.dry_run:
        return len(rows), last, new_high, BatchCounts(rejected=len(dead))
    loaded = None
    if loader.has_dead_letters:  # records rejected before that now pass: their dead letters go
        bad = {json.dumps(key, default=str, sort_keys=True) for key, _, _ in dead}
        loaded = [key for key in ({k: row.get(k) for k in run.key} for row in rows)
                  if json.dumps(key, default=str, sort_keys=True) not in bad]
    return len(rows), last, new_high, loader.load(good, dead, p.source.cursor, new_high, run.shape.columns, loaded)


def add(run: Run, n: int, counts: BatchCounts, total: int, started: float) -> None:
    r = run.result
    r.batches += 1
    r.extracted += n
    r.inserted += counts.inserted
    r.updated += counts.updated
    r.unchanged += counts.unchanged
    r.rejected += counts.rejected
    r.resolved += counts.resolved
    run.report(r.extracted, total, started)


def finish(run: Run, started: float, high: list[Any] | None, stored: list[str] | None) -> EtlResult:
    r = run.result
    r.valid = r.extracted - r.rejected
    r.elapsed_s = round(time.monotonic() - started, 3)
    r.rows_per_s = round(r.extracted / r.elapsed_s, 1) if r.elapsed_s > 0 else 0
    r.watermark = [str(v) for v in high] if high is not None else stored
    if not run.dry_run:
        r.dead_letter_table = f"{run.p.destination.state_schema}.dead_letter"
    return r
