"""Strategy replace: the destination's rows become exactly the source's, in one destination transaction.

``replace_by = "swap"`` (the default): the batches load into a shadow table while readers keep reading the old
rows, and an ACCESS EXCLUSIVE lock is taken only for the swap at the end (:mod:`agent19.etl.swap`).
``replace_by = "truncate"``: ACCESS EXCLUSIVE and ``TRUNCATE`` first, then the batches into the table itself —
readers wait for the whole load, but views, triggers and other tables' foreign keys stay as they are.

Either way a failure (or a kill) rolls everything back: the destination keeps its old rows. A transient error
starts the whole load again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agent19.etl.outcome import EtlResult, drift
from agent19.etl.steps import Run, add, finish, is_transient, step
from agent19.etl.swap import Swap

log = logging.getLogger(__name__)


def _load(run: Run, by_swap: bool) -> EtlResult:
    p, ex, r = run.p, run.extractor, run.result
    loader = run.open_destination()
    stored, before = run.stored(loader, resume=False)  # replace reads the whole source each run
    r.drift = drift(before, run.shape.columns, loader.columns, run.model, loader.destination_columns())
    total, started = ex.remaining(run.shape, None, None), time.monotonic()
    after: list[Any] | None = None
    assert run.conn is not None
    swap = Swap(run.conn, loader.table.as_string(run.conn), attempts=p.retry.attempts, backoff_s=p.retry.backoff_s,
                max_backoff_s=p.retry.max_backoff_s) if by_swap else None
    with run.conn.transaction():
        if swap is None:
            r.replaced = loader.empty_for_replace()
        else:
            loader.table, r.replaced = swap.begin()  # the batches go into the shadow table
        while True:
            n, last, high, counts = step(run, loader, after, None, after)
            if not n or last is None:
                break
            after = last
            add(run, n, counts, total, started)
            if n < p.batch_size:
                break
        if swap is not None:
            swap.build()
            swap.swap()
            r.swap = swap.notes
    return finish(run, started, after, stored)


def run_replace(run: Run) -> EtlResult:
    """Strategy replace (see the module docstring), retried as a whole on a transient error."""
    p, attempt = run.p, 0
    while True:
        run.result = EtlResult(pipeline=p.name, dry_run=False, strategy="replace",
                               destination_table=p.destination.table, retries=attempt,
                               replace_by=p.destination.replace_by)
        try:
            return _load(run, p.destination.replace_by == "swap")
        except Exception as exc:
            if not is_transient(exc) or attempt + 1 >= p.retry.attempts:
                raise
            attempt += 1
            log.warning("pipeline %s: transient error (%s), whole replace again (%d)", p.name, exc, attempt)
            run.close()
            time.sleep(min(p.retry.backoff_s * 2 ** (attempt - 1), p.retry.max_backoff_s))
