"""``run_pipeline``: an incremental batch load, resumable and exactly once (the library API of ``agent19 etl run``).

A run reads the pipeline's watermark from the destination, extracts the rows after it in keyset batches
(:mod:`agent19.etl.extract`), validates each record with the transform's pydantic model (failures become
dead letters with the reason and the source key), and loads each batch together with the new watermark in
one destination transaction (:mod:`agent19.etl.load`). Transient errors (connection lost, server restart,
deadlock, serialization failure, lock timeout) are retried with exponential backoff from the last
committed watermark. The run ends when a batch comes back short: rows committed later are the next run's.

Lag window: with ``lag``, a run starts at ``first cursor column >= watermark - lag`` rather than after the
watermark, so a transaction that committed late with a cursor value below the watermark (``updated_at =
now()`` is taken when the transaction starts, not when it commits) is picked up if it committed within the
lag. A row that commits more than ``lag`` behind the watermark is missed until it changes again: choose a
lag longer than the longest writing transaction of the source. Rows re-read in the window upsert as
"unchanged".
"""

from __future__ import annotations

import decimal
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from pydantic import BaseModel, Field, ValidationError

from agent19.config import AccessMode
from agent19.db.connection import Connection, Database
from agent19.errors import DatabaseUnavailable, InputError
from agent19.etl import policies
from agent19.etl.extract import Extractor, Prefetch, SourceShape
from agent19.etl.load import BatchCounts, Loader
from agent19.etl.pipeline import Pipeline, build_model, database_at, error_reason, parse_lag, resolve_dsn
from agent19.units import human_duration

log = logging.getLogger(__name__)

TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
Progress = Callable[[float, float | None, str | None], None]


class Drift(BaseModel):
    column: str
    change: str = Field(description="added, removed or retyped (since the previous run)")
    detail: str
    action: str = Field(description="what this run does about it")


class Rejection(BaseModel):
    source_key: dict[str, Any] = Field(description="the record's source key (data from the database)")
    reason: str


class EtlResult(BaseModel):
    pipeline: str
    dry_run: bool
    strategy: str
    destination_table: str
    extracted: int = 0
    valid: int = Field(default=0, description="extracted records that passed validation")
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = Field(default=0, description="records that failed validation (in the dead-letter table)")
    resolved: int = Field(default=0, description="dead letters removed: their records passed and loaded this time")
    replaced: int = Field(default=0, description="strategy replace: the destination's rows removed (all of them) "
                          "in the transaction that loaded the new ones")
    batches: int = 0
    retries: int = 0
    elapsed_s: float = 0
    rows_per_s: float = 0
    resumed_from: list[str] | None = Field(default=None, description="the watermark the run started after")
    watermark: list[str] | None = Field(default=None, description="the watermark after the run")
    lag_window: str | None = None
    drift: list[Drift] = []
    rejections: list[Rejection] = Field(default=[], description="the first rejections (all are in the "
                                        "dead-letter table)")
    dead_letter_table: str | None = None


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable | psycopg.OperationalError):
        return not (isinstance(exc, psycopg.Error) and exc.sqlstate == "57014")  # a statement timeout is not
    return isinstance(exc, psycopg.Error) and exc.sqlstate in TRANSIENT_SQLSTATES


def _database(base: Database, dsn: str | None) -> Database:
    return base if dsn is None else database_at(base.settings, dsn)


def _drift(before: dict[str, str] | None, now: dict[str, str], columns: list[str],
           model: type[BaseModel] | None, dest: dict[str, str] | None = None) -> list[Drift]:
    if not before:
        return []
    out: list[Drift] = []
    sources = {(f.validation_alias if isinstance(f.validation_alias, str) else name): (name, f.is_required())
               for name, f in (model.model_fields.items() if model else [])}
    for col, typ in now.items():
        if col not in before:
            loaded = col in sources or (model is None and col in columns)
            out.append(Drift(column=col, change="added", detail=f"new source column of type {typ}",
                             action="loaded" if loaded else "ignored: not in the pipeline's [transform] or not "
                             "in the destination"))
        elif before[col] != typ:
            out.append(Drift(column=col, change="retyped", detail=f"{before[col]} → {typ}",
                             action="the transform coerces it; values it cannot coerce become dead letters"
                             if model else "loaded as is: the destination's cast decides (a failing value stops "
                             "the batch, which is retried, then the run)"))
    for col, typ in before.items():
        if col not in now:
            name, required = sources.get(col, (col, False))
            action = ("every record is rejected (a required field): fix the source or the pipeline" if required
                      else "loaded as NULL" if col in sources
                      else f"no longer loaded: rows updated from now on keep the old {col} of the destination, "
                           "new rows get its default" if model is None and col in (dest or {})
                      else "nothing: it was not loaded")
            out.append(Drift(column=col, change="removed", detail=f"was {typ}", action=action))
    return out


class _Run:
    def __init__(self, pipeline: Pipeline, source: Database, destination: Database, model: type[BaseModel] | None,
                 dry_run: bool, progress: Progress | None, max_rejections: int):
        self.p = pipeline
        self.model = model
        self.dry_run = dry_run
        self.progress = progress
        self.max_rejections = max_rejections
        self.dest_db = destination
        self.extractor = Extractor(source, table=pipeline.source.table, query=pipeline.source.query,
                                   cursor=pipeline.source.cursor)
        self.shape: SourceShape = self.extractor.shape()
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
        if not self.dry_run:
            loader.prepare()
        self.loader = loader
        return loader

    def stored(self, loader: Loader) -> tuple[list[str] | None, dict[str, str] | None]:
        assert self.conn is not None
        exists = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok",
                                   (f"{loader.schema.as_string(self.conn)}.watermark",)).fetchone()
        return loader.watermark() if exists and exists["ok"] else (None, None)

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
            self.conn.close()  # the session's advisory lock and staging table go with it
            self.conn = None

    def validate(self, rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[tuple[Any, ...]],
                                                                               list[tuple[Any, str, Any]]]:
        good: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, str, Any]] = []
        for row in rows:
            if self.model is None:
                good.append(tuple(row.get(c) for c in columns))
                continue
            try:
                record = self.model.model_validate(row).model_dump()
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


def run_pipeline(pipeline: Pipeline, database: Database, *, dry_run: bool = False,
                 model: type[BaseModel] | None = None, progress: Progress | None = None,
                 max_rejections: int = 20) -> EtlResult:
    """Run ``pipeline`` once (see the module docstring). ``database`` is agent19's database: the source and
    destination default to it, and its settings (mode, timeouts) apply to both. Loading needs mode execute."""
    pipeline.check()
    source = _database(database, resolve_dsn(pipeline.source.dsn))
    destination = _database(database, resolve_dsn(pipeline.destination.dsn))
    try:
        run = _Run(pipeline, source, destination, model or build_model(pipeline), dry_run, progress, max_rejections)
        try:
            if not dry_run:  # after the source query was admitted: a refusal names what the SQL tried
                destination.require(AccessMode.EXECUTE, "loading rows into the destination (use dry_run to only "
                                                        "extract and validate)")
                tested = policies.require(pipeline, destination)
            else:
                state = policies.server_state(destination)
            result = _execute(run)
            if dry_run:
                policies.record_dry_run(pipeline, destination, state)
            else:
                policies.ran(destination, tested)
            return result
        finally:
            run.close()
    finally:
        for db in (source, destination):  # pools opened for the pipeline's own DSNs (a server outlives the call)
            if db is not database:
                db.close()


def _minus(value: Any, lag: Any, column: str) -> Any:
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


def _step(run: _Run, loader: Loader, after: list[Any] | None, since: Any, high: list[Any] | None
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


def _add(run: _Run, n: int, counts: BatchCounts, total: int, started: float) -> None:
    r = run.result
    r.batches += 1
    r.extracted += n
    r.inserted += counts.inserted
    r.updated += counts.updated
    r.unchanged += counts.unchanged
    r.rejected += counts.rejected
    r.resolved += counts.resolved
    run.report(r.extracted, total, started)


def _finish(run: _Run, started: float, high: list[Any] | None, stored: list[str] | None) -> EtlResult:
    r = run.result
    r.valid = r.extracted - r.rejected
    r.elapsed_s = round(time.monotonic() - started, 3)
    r.rows_per_s = round(r.extracted / r.elapsed_s, 1) if r.elapsed_s > 0 else 0
    r.watermark = [str(v) for v in high] if high is not None else stored
    if not run.dry_run:
        r.dead_letter_table = f"{run.p.destination.state_schema}.dead_letter"
    return r


def _replace(run: _Run) -> EtlResult:
    """Strategy replace: one destination transaction empties the table (ACCESS EXCLUSIVE, so readers wait and
    then see the new rows, never an empty table) and loads the whole source; a failure leaves the old rows. A
    transient error starts the whole load again."""
    p, ex, attempt = run.p, run.extractor, 0
    while True:
        run.result = r = EtlResult(pipeline=p.name, dry_run=False, strategy="replace",
                                   destination_table=p.destination.table, retries=attempt)
        try:
            loader = run.open_destination()
            stored, before = run.stored(loader)
            r.drift = _drift(before, run.shape.columns, loader.columns, run.model, loader.destination_columns())
            total, started = ex.remaining(run.shape, None, None), time.monotonic()
            after: list[Any] | None = None
            assert run.conn is not None
            with run.conn.transaction():
                r.replaced = loader.empty_for_replace()
                while True:
                    n, last, high, counts = _step(run, loader, after, None, after)
                    if not n or last is None:
                        break
                    after = last
                    _add(run, n, counts, total, started)
                    if n < p.batch_size:
                        break
            return _finish(run, started, after, stored)
        except Exception as exc:
            if not _is_transient(exc) or attempt + 1 >= p.retry.attempts:
                raise
            attempt += 1
            log.warning("pipeline %s: transient error (%s), whole replace again (%d)", p.name, exc, attempt)
            run.close()
            time.sleep(min(p.retry.backoff_s * 2 ** (attempt - 1), p.retry.max_backoff_s))


def _execute(run: _Run) -> EtlResult:
    p, r, ex = run.p, run.result, run.extractor
    if p.destination.strategy == "replace" and not run.dry_run:
        return _replace(run)
    loader = run.open_destination()
    stored, before = run.stored(loader)
    r.drift = _drift(before, run.shape.columns, loader.columns, run.model, loader.destination_columns())
    lag = parse_lag(p.source.lag)
    after: list[Any] | None = ex.typed(run.shape, stored) if stored and p.destination.strategy != "replace" else None
    high = after
    since = None
    if after is not None and lag:
        since, after = _minus(after[0], lag, p.source.cursor[0]), None
        r.lag_window = f"re-reading from {p.source.cursor[0]} >= {since}"
    r.resumed_from = stored
    total = ex.remaining(run.shape, after, since)
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            n, last, new_high, counts = _step(run, loader, after, since, high)
            if not n or last is None:
                break
        except Exception as exc:
            if not _is_transient(exc) or attempt + 1 >= p.retry.attempts:
                raise
            attempt += 1
            r.retries += 1
            wait = min(p.retry.backoff_s * 2 ** (attempt - 1), p.retry.max_backoff_s)
            log.warning("pipeline %s: transient error (%s), retry %d in %.1fs", p.name, exc, attempt, wait)
            time.sleep(wait)
            if not run.dry_run:  # the commit's outcome may be unknown: start again from the stored watermark
                run.close()
                try:
                    loader = run.open_destination()
                    stored, _ = run.stored(loader)
                    after = ex.typed(run.shape, stored) if stored else None
                    high, since = after, None if after is not None else since
                except Exception as again:  # noqa: BLE001  (the next loop decides: retry or give up)
                    if not _is_transient(again):
                        raise
            continue
        attempt = 0
        after, since, high = last, None, new_high
        _add(run, n, counts, total, started)
        if n < p.batch_size:
            break
    return _finish(run, started, high, stored)
