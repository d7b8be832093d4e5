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

import logging
import time
from typing import Any

from pydantic import BaseModel

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.etl import policies
from agent19.etl.outcome import Drift, EtlResult, Rejection, drift
from agent19.etl.pipeline import Pipeline, build_model, database_at, parse_lag, resolve_dsn
from agent19.etl.replace import run_replace
from agent19.etl.steps import Progress, Run, add, finish, is_transient, minus, step

__all__ = ["Drift", "EtlResult", "Rejection", "run_pipeline"]

log = logging.getLogger(__name__)


def _database(base: Database, dsn: str | None) -> Database:
    return base if dsn is None else database_at(base.settings, dsn)


def run_pipeline(pipeline: Pipeline, database: Database, *, dry_run: bool = False,
                 model: type[BaseModel] | None = None, progress: Progress | None = None,
                 max_rejections: int = 20) -> EtlResult:
    """Run ``pipeline`` once (see the module docstring). ``database`` is agent19's database: the source and
    destination default to it, and its settings (mode, timeouts) apply to both. Loading needs mode execute."""
    pipeline.check()
    source = _database(database, resolve_dsn(pipeline.source.dsn))
    destination = _database(database, resolve_dsn(pipeline.destination.dsn))
    try:
        run = Run(pipeline, source, destination, model or build_model(pipeline), dry_run, progress, max_rejections,
                  flat=model is None)
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


def _execute(run: Run) -> EtlResult:
    p, r, ex = run.p, run.result, run.extractor
    if p.destination.strategy == "replace" and not run.dry_run:
        return run_replace(run)
    loader = run.open_destination()
    stored, before = run.stored(loader)
    r.drift = drift(before, run.shape.columns, loader.columns, run.model, loader.destination_columns())
    lag = parse_lag(p.source.lag)
    after: list[Any] | None = ex.typed(run.shape, stored) if stored and p.destination.strategy != "replace" else None
    high = after
    since = None
    if after is not None and lag:
        since, after = minus(after[0], lag, p.source.cursor[0]), None
        r.lag_window = f"re-reading from {p.source.cursor[0]} >= {since}"
    r.resumed_from = stored
    total = ex.remaining(run.shape, after, since)
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            n, last, new_high, counts = step(run, loader, after, since, high)
            if not n or last is None:
                break
        except Exception as exc:
            if not is_transient(exc) or attempt + 1 >= p.retry.attempts:
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
                    if not is_transient(again):
                        raise
            continue
        attempt = 0
        after, since, high = last, None, new_high
        add(run, n, counts, total, started)
        if n < p.batch_size:
            break
    return finish(run, started, high, stored)
