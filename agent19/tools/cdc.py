"""cdc_check and cdc_run (``agent19 cdc check`` / ``agent19 cdc run``): change data capture in one process."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.db.redact import password_of
from agent19.errors import InputError
from agent19.etl.cdc import CdcResult, run_cdc
from agent19.etl.cdc_check import CdcReadiness, check_cdc
from agent19.etl.pipeline import resolve_dsn
from agent19.tools.registry import ToolContext, tool
from agent19.units import human_size


class CdcCheckArgs(BaseModel):
    tables: list[str] = Field(description="tables to capture, schema.table")
    publication: str = Field(default="agent19_cdc", description="the publication pgoutput / Debezium would use")


def render_check(r: CdcReadiness) -> str:
    lines = ["ready for CDC" if r.ready else "NOT ready for CDC"]
    for f in r.findings:
        lines.append(f"  [{f.status}] {f.check}: {f.detail}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return "\n".join(lines)


@tool(
    name="cdc_check",
    title="Is the source ready for change data capture?",
    args=CdcCheckArgs,
    result=CdcReadiness,
    cli="cdc check",
    positional=("tables",),
    render_text=render_check,
    exit_code=lambda r: 0 if r.ready else 1,
    examples=("agent19 cdc check public.orders public.customers",),
)
def cdc_check(ctx: ToolContext, args: CdcCheckArgs) -> CdcReadiness:
    """Readiness of the source (agent19's database) for change data capture of `tables`: wal_level = logical,
    free replication slots and WAL senders, the login's REPLICATION privilege, max_slot_wal_keep_size (so a
    stalled consumer cannot fill the disk), inactive slots retaining WAL, REPLICA IDENTITY per table (no
    primary key → FULL needed, else updates and deletes carry no key), the publication pgoutput/Debezium
    would use, and heartbeat advice for quiet databases. Each finding comes with the SQL that fixes it."""
    return check_cdc(ctx.db, args.tables, args.publication)


class CdcRunArgs(BaseModel):
    tables: list[str] = Field(description="tables to capture, schema.table; the destination has tables of the same "
                              "names and columns")
    destination: str = Field(description="the destination: env:VAR naming an environment variable that holds its "
                             "DSN (keeps the password off command lines), or a DSN without password")
    slot: str = Field(default="agent19_cdc", description="the logical replication slot (agent19_…), created on the "
                      "first run")
    follow: bool = Field(default=False, description="keep consuming after catching up (until max_seconds)")
    max_seconds: float | None = Field(default=None, gt=0, description="stop after this long")
    batch_changes: int = Field(default=10_000, ge=1, description="changes read per batch (whole transactions)")
    teardown: bool = Field(default=False, description="drop the slot and its state, apply nothing")
    state_schema: str = Field(default="agent19_etl", description="schema of cdc_state in the destination")


def render_run(r: CdcResult) -> str:
    if r.dropped:
        return f"slot {r.slot} dropped with its state: the source keeps no WAL for it any more"
    lines = []
    if r.initial_copy:
        copied = ", ".join(f"{t} {n:,} rows" for t, n in r.initial_copy.items())
        lines.append(f"initial copy (exported snapshot): {copied}")
    lines.append(f"cdc {r.slot}: {r.transactions:,} transactions applied ({r.inserts:,} inserts, {r.updates:,} "
                 f"updates, {r.deletes:,} deletes) in {r.elapsed_s:.1f}s, {r.changes_per_s:,.0f} changes/s; "
                 f"{'caught up' if r.caught_up else 'stopped before catching up'} at {r.lsn}")
    if r.skipped_transactions:
        lines.append(f"  {r.skipped_transactions} transaction(s) already applied before a restart: skipped")
    if r.lag_bytes is not None:
        lines.append(f"  lag: {human_size(r.lag_bytes)}, {r.lag_s or 0:.1f}s; WAL retained by the slot: "
                     f"{human_size(r.retained_wal_bytes)}")
    lines += [f"  warning: {w}" for w in r.warnings]
    return "\n".join(lines)


@tool(
    name="cdc_run",
    title="Apply a logical replication slot's changes to a destination",
    args=CdcRunArgs,
    result=CdcResult,
    cli="cdc run",
    positional=("tables",),
    mode=AccessMode.EXECUTE,
    read_only=False,
    destructive=True,  # the first run empties the destination tables before the initial copy; teardown drops a slot
    idempotent=True,
    render_text=render_run,
    examples=(
        "WAREHOUSE_URL=postgresql://etl@wh/dw agent19 cdc run public.orders --destination env:WAREHOUSE_URL "
        "--mode execute",
        "agent19 cdc run public.orders --destination env:WAREHOUSE_URL --follow --max-seconds 3600 --mode execute",
        "agent19 cdc run public.orders --destination env:WAREHOUSE_URL --teardown --mode execute   # drop the slot",
    ),
)
def cdc_run(ctx: ToolContext, args: CdcRunArgs) -> CdcResult:
    """Change data capture from agent19's database (the source) into a destination PostgreSQL: on the first run
    a wal2json logical replication slot is created and the tables copied under its exported snapshot (the
    destination tables are emptied first); then inserts, updates and deletes are applied in commit order,
    each batch in one destination transaction together with the commit LSN reached, and the slot advanced
    only after it commits — exactly once across restarts and kills. Stops when caught up (or, with `follow`,
    after `max_seconds`). Reports lag in bytes and seconds and the WAL the slot retains, with a warning when it
    grows. `teardown` drops the slot and its state: a slot nobody reads keeps WAL forever. Needs mode execute
    and a login with REPLICATION on the source."""
    dsn = resolve_dsn(args.destination)
    if dsn is None or (not args.destination.startswith("env:") and password_of(dsn)):
        raise InputError("the destination DSN carries a password (arguments end up in shell history and logs)",
                         "put the DSN in an environment variable and pass env:VAR, e.g. --destination "
                         "env:WAREHOUSE_URL")
    ctx.db.require(AccessMode.EXECUTE, "change data capture (it creates a slot and writes the destination)")
    dest_db = Database(ctx.settings.model_copy(update={"dsn": SecretStr(dsn), "read_dsn": None}))
    conn = dest_db.connect()
    try:
        return run_cdc(ctx.db, conn, slot=args.slot, tables=args.tables, state_schema=args.state_schema,
                       batch_changes=args.batch_changes, max_seconds=args.max_seconds, follow=args.follow,
                       teardown=args.teardown, progress=ctx.progress)
    finally:
        conn.close()
