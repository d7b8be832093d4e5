"""run_backfill: the batched, resumable backfill executor as a tool (``agent19 backfill``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from agent19.config import AccessMode
from agent19.errors import InputError, ModeError
from agent19.migrate.backfill.executor import BackfillResult, BackfillSpec
from agent19.safety.protocol import Confirmation
from agent19.tool_names import argument
from agent19.tools.registry import ToolContext, tool

if TYPE_CHECKING:
    from agent19.safety import measure as measuring


class BackfillArgs(BackfillSpec):
    emit: Literal["python", "procedure"] | None = Field(
        default=None, description="run nothing; return the same backfill as a standalone Python script (psycopg 3 "
        "only) or a PL/pgSQL procedure (CALL it outside a transaction), for teams that run their own")
    confirm_token: str | None = Field(
        default=None, description="a backfill that overwrites every row (no WHERE, or one that is always true) "
        "is destructive: the token from the first call's confirmation report")
    confirm_phrase: str | None = Field(
        default=None, description="only when the operator allows it (AGENT19_ALLOW_MODEL_CONFIRMATION=1): the "
        "phrase as typed by the approver. Otherwise the human confirms out of band (elicitation, the page, or "
        "`agent19 confirm --token` at a terminal) and you call again with confirm_token alone")


class BackfillOutput(BackfillResult):
    emitted: str | None = Field(default=None, description="the script or procedure asked for with `emit`")
    confirmation: Confirmation | None = Field(
        default=None, description="for a destructive backfill: the confirmation report (challenge, refusal, or "
        "executed)")


def render_backfill(r: BackfillResult) -> str:
    from agent19.tools.confirm import render_confirmation

    if isinstance(r, BackfillOutput) and r.emitted is not None:
        return r.emitted.rstrip("\n")
    if isinstance(r, BackfillOutput) and r.confirmation is not None and not r.confirmation.executed:
        return render_confirmation(r.confirmation)
    if r.already_done:
        head = f"backfill {r.name} on {r.table} had already finished: {r.rows_updated:,} rows updated"
    else:
        head = (f"backfill {r.name} on {r.table}: {r.rows_updated_this_run:,} rows updated in {r.elapsed_s:.1f}s "
                f"({r.rows_per_s:,.0f} rows/s), {r.batches} batches in all"
                + (" - resumed from its checkpoint" if r.resumed else ""))
    lines = [head, f"total over every run: {r.rows_updated:,} updated, {r.rows_scanned:,} visited"]
    if r.retries:
        lines.append(f"{r.retries} batch(es) retried after a lock timeout or deadlock")
    if r.replication_wait_s:
        lines.append(f"waited {r.replication_wait_s:.0f}s for replicas to catch up")
    if r.remaining is not None:
        lines.append("validation: no row left matching the condition" if r.remaining == 0
                     else f"validation: {r.remaining:,} rows still match the condition (inserted behind the "
                     f"cursor?): run again with {argument('restart')}")
    return "\n".join(lines)


@tool(
    name="run_backfill",
    briefs={
        "table": "", "set": "SET list, e.g. b = a::bigint", "where": "", "key": "", "batch_size": "",
        "min_batch_size": "", "max_batch_size": "", "target_batch_ms": "", "pause_ms": "", "lock_timeout_ms": "",
        "max_replication_lag_s": "null: never wait", "max_retries": "", "name": "checkpoint name", "restart": "",
        "validate_end": "", "emit": "run nothing; return a script", "confirm_token": "from the confirmation report",
        "confirm_phrase": "only if the operator allows it",
    },
    title="Batched backfill",
    args=BackfillArgs,
    result=BackfillOutput,
    cli="backfill",
    positional=("table",),
    mode=AccessMode.EXECUTE,
    read_only=False,
    destructive=True,  # it overwrites values; overwriting every row goes through the confirmation protocol
    idempotent=True,
    render_text=render_backfill,
    exit_code=lambda r: 1 if r.remaining or (r.confirmation and not r.confirmation.executed) else 0,
    examples=(
        "agent19 backfill orders --set 'amount_new = amount::numeric(12,2)' --where 'amount_new IS NULL' "
        "--mode execute",
        "agent19 backfill orders --set 'status = 0' --where 'status IS NULL' --target-batch-ms 100 --pause-ms 50",
        "agent19 backfill orders --set 'status = 0' --where 'status IS NULL' --emit python > backfill_orders.py",
    ),
)
def run_backfill(ctx: ToolContext, args: BackfillArgs) -> BackfillOutput:
    """Update a large table in short, resumable batches instead of one big UPDATE.

    Update a large table in short keyset batches by primary key: `UPDATE table SET <set> WHERE
    <where>`, one transaction per batch with lock_timeout, batch size adapted to `target_batch_ms`,
    optional pause, waits while replicas lag more than `max_replication_lag_s`. Reports progress
    (rows, rate, ETA). Resumable and exactly-once: each batch moves a checkpoint row
    (agent19_backfill_checkpoint) in the same transaction, so calling it again after a crash or kill
    continues where it stopped. Ends with the count of rows still matching `where` (expect 0).
    Needs mode execute. With `emit` it runs nothing and returns the same backfill (same batches, same
    checkpoint: each can resume the other's run) as a standalone Python script (needs no database
    here) or a PL/pgSQL procedure (reads the key column's type; any mode).

    A backfill that overwrites values can lose data: before a new run starts, agent19 counts exactly the
    rows matching `where` whose SET columns are not NULL; above run_sql's thresholds (or with no `where`)
    it runs only through the confirmation protocol — the first call returns the impact report, the
    phrase and a token; the human confirms out of band (or through elicitation), then call again
    with `confirm_token`."""
    from agent19.migrate.backfill.executor import check_fragments, overwritten_rows
    from agent19.migrate.backfill.executor import run_backfill as _run_backfill
    from agent19.safety import policy
    from agent19.safety.protocol import Protocol

    if args.emit is not None:
        return _emit(ctx, args)
    ctx.db.require(AccessMode.EXECUTE, "running a backfill")
    spec = BackfillSpec(**args.model_dump(exclude={"emit", "confirm_token", "confirm_phrase"}))
    check_fragments(spec)
    _plans(ctx, spec)
    results: list[BackfillResult] = []

    protocol = Protocol(ctx.settings, ctx.db, ctx.elicit, ctx.progress)
    statement = update_statement(spec)
    # the execute-mode policies hold for the batched UPDATE as for the same UPDATE through run_sql
    tested = policy.tested(ctx.settings, ctx.db, statement)
    if why := tested.refusal or policy.unbacked(ctx.settings, ctx.db, "UpdateStmt"):
        raise ModeError(f"refused: {why}", f"the backfill's statement is `{statement}`; nothing was updated")

    def execute() -> None:
        with ctx.db.connect() as conn:
            results.append(_run_backfill(conn, spec, ctx.progress))
        policy.ran(ctx.settings, ctx.db, tested)  # require_dry_run: the migration's next change may run

    def measure() -> measuring.Measurement:  # a WHERE that matches every row without saying so (`id > 0`)
        with ctx.db.read() as conn:
            return overwritten_rows(conn, spec)

    if args.confirm_token is None and ctx.elicit is None:
        # never run the whole UPDATE as one statement: count what it would overwrite instead
        first = protocol.challenge(statement, trial=False, measure=measure)
        if first.outcome == "not_destructive":
            execute()
            return BackfillOutput(**results[0].model_dump())
        return _not_run(spec, first)
    confirmation = (protocol.confirm(statement, args.confirm_token, args.confirm_phrase, execute=execute)
                    if args.confirm_token is not None
                    else protocol.run_with_elicitation(statement, execute=execute, measure=measure))
    if confirmation.outcome == "not_destructive":
        execute()
    if not results:
        return _not_run(spec, confirmation)
    return BackfillOutput(**results[0].model_dump(), confirmation=confirmation if confirmation.executed else None)


def update_statement(spec: BackfillSpec) -> str:
    """The one UPDATE the backfill performs in batches (what the confirmation protocol judges)."""
    return f"UPDATE {spec.table} SET {spec.set}" + (f" WHERE {spec.where}" if spec.where else "")


def _plans(ctx: ToolContext, spec: BackfillSpec) -> None:
    """The backfill's UPDATE plans on its table (EXPLAIN, nothing run): a misspelt column or table is said as the
    user's input (exit 2), not as an error in one of agent19's own queries built from it."""
    import psycopg

    statement = update_statement(spec)
    with ctx.db.read() as conn:
        try:
            with conn.transaction():
                conn.execute(f"EXPLAIN {statement}".encode())  # type: ignore[call-overload]
        except psycopg.Error as exc:
            if not (exc.sqlstate or "").startswith(("42", "22")):  # not the input's (e.g. a lock timeout): as it is
                raise
            raise InputError(f"the backfill's statement cannot run: {str(exc).strip().splitlines()[0]}",
                             f"check the table, {argument('set')} and {argument('where')} (`{statement}`); "
                             "nothing was updated") from None


def _not_run(spec: BackfillSpec, confirmation: Confirmation) -> BackfillOutput:
    return BackfillOutput(name=spec.checkpoint_name(), table=spec.table, rows_updated=0, rows_scanned=0, batches=0,
                          resumed=False, rows_updated_this_run=0, elapsed_s=0.0, rows_per_s=0.0, last_batch_size=0,
                          confirmation=confirmation)


def _emit(ctx: ToolContext, args: BackfillArgs) -> BackfillOutput:
    from agent19.migrate.backfill.executor import Q_TABLE, _key_columns, check_fragments
    from agent19.migrate.backfill.scripts import procedure_sql, python_script

    spec = BackfillSpec(**args.model_dump(exclude={"emit"}))
    if args.emit == "python":
        text, table = python_script(spec), spec.table
    else:
        check_fragments(spec)
        with ctx.db.connect() as conn:
            row = conn.execute(Q_TABLE, (spec.table,)).fetchone()
            if row is None:
                raise InputError(f"table {spec.table!r} not found", "give name or schema.name")
            keys = _key_columns(conn, row["oid"], spec)
        if len(keys) != 1:
            raise InputError("the procedure form walks a single-column key",
                             f"use {argument('emit')} python for composite keys")
        text, table = procedure_sql(spec, keys[0][0], keys[0][1], lock_timeout=f"{spec.lock_timeout_ms}ms"), spec.table
    return BackfillOutput(name=spec.checkpoint_name(), table=table, rows_updated=0, rows_scanned=0, batches=0,
                          resumed=False, rows_updated_this_run=0, elapsed_s=0.0, rows_per_s=0.0, last_batch_size=0,
                          emitted=text)
