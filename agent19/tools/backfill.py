"""run_backfill: the batched, resumable backfill executor as a tool (``agent19 backfill``)."""

from __future__ import annotations

from agent19.config import AccessMode
from agent19.migrate.backfill import BackfillResult, BackfillSpec
from agent19.migrate.backfill import run_backfill as _run_backfill
from agent19.tools.registry import ToolContext, tool


def render_backfill(r: BackfillResult) -> str:
    if r.already_done:
        head = f"backfill {r.name} on {r.table} had already finished: {r.rows_updated:,} rows updated"
    else:
        head = (f"backfill {r.name} on {r.table}: {r.rows_updated_this_run:,} rows updated in {r.elapsed_s:.1f}s "
                f"({r.rows_per_s:,.0f} rows/s), {r.batches} batches in all"
                + (" — resumed from its checkpoint" if r.resumed else ""))
    lines = [head, f"total over every run: {r.rows_updated:,} updated, {r.rows_scanned:,} visited"]
    if r.retries:
        lines.append(f"{r.retries} batch(es) retried after a lock timeout or deadlock")
    if r.replication_wait_s:
        lines.append(f"waited {r.replication_wait_s:.0f}s for replicas to catch up")
    if r.remaining is not None:
        lines.append("validation: no row left matching the condition" if r.remaining == 0
                     else f"validation: {r.remaining:,} rows still match the condition (inserted behind the "
                     "cursor?): run again with --restart")
    return "\n".join(lines)


@tool(
    name="run_backfill",
    title="Run a batched, resumable backfill",
    args=BackfillSpec,
    result=BackfillResult,
    cli="backfill",
    positional=("table",),
    mode=AccessMode.EXECUTE,
    read_only=False,
    destructive=False,
    idempotent=True,
    render_text=render_backfill,
    exit_code=lambda r: 1 if r.remaining else 0,
    examples=(
        "agent19 backfill orders --set 'amount_new = amount::numeric(12,2)' --where 'amount_new IS NULL' "
        "--mode execute",
        "agent19 backfill orders --set 'status = 0' --where 'status IS NULL' --target-batch-ms 100 --pause-ms 50",
    ),
)
def run_backfill(ctx: ToolContext, args: BackfillSpec) -> BackfillResult:
    """Update a large table in short keyset batches by primary key: `UPDATE table SET <set> WHERE
    <where>`, one transaction per batch with lock_timeout, batch size adapted to `target_batch_ms`,
    optional pause, waits while replicas lag more than `max_replication_lag_s`. Reports progress
    (rows, rate, ETA). Resumable and exactly-once: each batch moves a checkpoint row
    (agent19_backfill_checkpoint) in the same transaction, so calling it again after a crash or kill
    continues where it stopped. Ends with the count of rows still matching `where` (expect 0).
    Needs mode execute."""
    ctx.db.require(AccessMode.EXECUTE, "running a backfill")
    with ctx.db.connect() as conn:
        return _run_backfill(conn, args, ctx.progress)
