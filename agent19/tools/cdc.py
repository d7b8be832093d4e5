"""cdc_check and cdc_run (``agent19 cdc check`` / ``agent19 cdc run``): change data capture in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from agent19.config import AccessMode
from agent19.errors import InputError
from agent19.etl.cdc import CdcResult
from agent19.etl.cdc_check import CdcReadiness
from agent19.etl.debezium import DebeziumConfig
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
    briefs={
        "tables": "schema.table", "publication": "",
    },
    title="CDC readiness",
    args=CdcCheckArgs,
    result=CdcReadiness,
    cli="cdc check",
    positional=("tables",),
    render_text=render_check,
    exit_code=lambda r: 0 if r.ready else 1,
    examples=("agent19 cdc check public.orders public.customers",),
)
def cdc_check(ctx: ToolContext, args: CdcCheckArgs) -> CdcReadiness:
    """Is a source database ready for change data capture of some tables? With the SQL fixes.

    Readiness of the source (agent19's database) for change data capture of `tables`: wal_level = logical,
    free replication slots and WAL senders, the login's REPLICATION privilege, max_slot_wal_keep_size (so a
    stalled consumer cannot fill the disk), inactive slots retaining WAL, REPLICA IDENTITY per table (no
    primary key → FULL needed, else updates and deletes carry no key), the publication pgoutput/Debezium
    would use, and heartbeat advice for quiet databases. Each finding comes with the SQL that fixes it."""
    from agent19.etl.cdc_check import check_cdc

    return check_cdc(ctx.db, args.tables, args.publication)


class CdcRunArgs(BaseModel):
    tables: list[str] = Field(description="tables to capture, schema.table; the destination has tables of the same "
                              "names and columns")
    destination: str = Field(description="the destination: env:VAR naming an environment variable that holds its "
                             "DSN (keeps the password off command lines), or a DSN without password")
    slot: str = Field(default="agent19_cdc", description="the logical replication slot (agent19_...), created on the "
                      "first run")
    follow: bool = Field(default=False, description="keep consuming after catching up (until max_seconds)")
    max_seconds: float | None = Field(default=None, gt=0, description="stop after this long")
    batch_changes: int = Field(default=10_000, ge=1, description="changes read per batch (whole transactions)")
    teardown: bool = Field(default=False, description="drop the slot and its state, apply nothing")
    state_schema: str = Field(default="agent19_etl", description="schema of cdc_state in the destination")
    plugin: Literal["wal2json", "pgoutput"] = Field(
        default="wal2json", description="the slot's output plugin: wal2json (an extension) or pgoutput (built in; "
        "reads the tables of `publication`, which must exist and cover them: cdc check gives its SQL)")
    publication: str = Field(default="agent19_cdc", description="pgoutput: the publication to read")


def render_run(r: CdcResult) -> str:
    if r.dropped:
        return (f"slot {r.slot} dropped with its state: the source keeps no WAL for it any more (the destination "
                "tables keep their rows; a new first run needs them empty)")
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
    briefs={
        "tables": "schema.table", "destination": "env:VAR or a DSN without password", "slot": "", "follow": "",
        "max_seconds": "", "batch_changes": "", "teardown": "drop the slot; apply nothing", "state_schema": "",
        "plugin": "", "publication": "",
    },
    title="Run CDC",
    args=CdcRunArgs,
    result=CdcResult,
    cli="cdc run",
    positional=("tables",),
    mode=AccessMode.EXECUTE,
    read_only=False,
    destructive=True,  # it writes the destination (never removing a row it did not copy); teardown drops a slot
    idempotent=True,
    render_text=render_run,
    examples=(
        "WAREHOUSE_URL=postgresql://etl@wh/dw agent19 cdc run public.orders --destination env:WAREHOUSE_URL "
        "--mode execute",
        "agent19 cdc run public.orders --destination env:WAREHOUSE_URL --follow --max-seconds 3600 --mode execute",
        "agent19 cdc run public.orders --destination env:WAREHOUSE_URL --teardown --mode execute   # drop the slot",
        "agent19 cdc run public.orders --destination env:WAREHOUSE_URL --plugin pgoutput --publication agent19_cdc "
        "--mode execute   # the built-in plugin: no extension needed",
    ),
)
def cdc_run(ctx: ToolContext, args: CdcRunArgs) -> CdcResult:
    """Copy tables into another PostgreSQL and keep them in sync by change data capture, exactly once.
    Use after cdc_check.

    Change data capture from agent19's database (the source) into a destination PostgreSQL: on the first run
    a logical replication slot (wal2json, or with `plugin` the built-in pgoutput reading `publication`) is
    created and the tables copied under its exported snapshot into
    destination tables that must be empty (a table with rows is refused with its row count: no row is ever
    removed without a person's confirmation — empty it with confirm_destructive on the destination); then
    inserts, updates and deletes are applied in commit order,
    each batch in one destination transaction together with the commit LSN reached, and the slot advanced
    only after it commits — exactly once across restarts and kills. Stops when caught up (or, with `follow`,
    after `max_seconds`). Reports lag in bytes and seconds and the WAL the slot retains, with a warning when it
    grows. `teardown` drops the slot and its state: a slot nobody reads keeps WAL forever. Needs mode execute
    and a login with REPLICATION on the source."""
    from agent19.db.redact import password_of
    from agent19.etl.cdc import run_cdc
    from agent19.etl.pipeline import database_at, resolve_dsn
    from agent19.tools._dsn_policy import require_env_dsn

    require_env_dsn(ctx, args.destination, "destination")
    dsn = resolve_dsn(args.destination)
    if dsn is None or (not args.destination.startswith("env:") and password_of(dsn)):
        raise InputError("the destination DSN carries a password (arguments end up in shell history and logs)",
                         "put the DSN in an environment variable and pass env:VAR, e.g. --destination "
                         "env:WAREHOUSE_URL")
    ctx.db.require(AccessMode.EXECUTE, "change data capture (it creates a slot and writes the destination)")
    dest_db = database_at(ctx.settings, dsn)
    conn = dest_db.connect()
    try:
        return run_cdc(ctx.db, conn, slot=args.slot, tables=args.tables, state_schema=args.state_schema,
                       batch_changes=args.batch_changes, max_seconds=args.max_seconds, follow=args.follow,
                       teardown=args.teardown, progress=ctx.progress, plugin=args.plugin,
                       publication=args.publication)
    finally:
        conn.close()


class DebeziumArgs(BaseModel):
    tables: list[str] = Field(description="tables to capture, schema.table")
    topic_prefix: str | None = Field(default=None, description="Kafka topic prefix (default: the database name)")
    name: str = Field(default="agent19", description="connector name prefix (NAME-source, NAME-sink)")
    slot: str = Field(default="debezium", description="the replication slot Debezium creates and keeps")
    publication: str = Field(default="agent19_cdc", description="the filtered publication (created by setup_sql)")
    sink: str | None = Field(default=None, description="also a JDBC sink configuration into this PostgreSQL: env:VAR "
                             "or a DSN without password (the password is read by Kafka Connect from its env)")
    heartbeat_ms: int = Field(default=10_000, ge=1000, description="Debezium heartbeat.interval.ms")
    snapshot_mode: str = Field(default="initial", description="Debezium snapshot.mode (initial, never, "
                               "initial_only, no_data...)")
    write_to: str | None = Field(default=None, description="CLI: also write source.json, sink.json and setup.sql "
                                 "into this directory", json_schema_extra={"cli_only": True})


def render_debezium(r: DebeziumConfig) -> str:
    from agent19.etl.debezium import dumps

    parts = ["# source connector (POST to Kafka Connect /connectors)", dumps(r.source_connector)]
    if r.sink_connector:
        parts += ["# JDBC sink connector", dumps(r.sink_connector)]
    parts += ["# setup SQL for the source", r.setup_sql, "# readiness (agent19 cdc check)", render_check(r.readiness)]
    parts += [f"# note: {n}" for n in r.notes]
    return "\n".join(parts).rstrip("\n")


@tool(
    name="cdc_debezium",
    briefs={
        "tables": "schema.table", "topic_prefix": "", "name": "", "slot": "", "publication": "",
        "sink": "env:VAR or DSN of a JDBC sink", "heartbeat_ms": "", "snapshot_mode": "",
    },
    title="Debezium config",
    args=DebeziumArgs,
    result=DebeziumConfig,
    cli="cdc debezium",
    positional=("tables",),
    read_only=False,  # --write-to writes the files
    render_text=render_debezium,
    exit_code=lambda r: 0 if r.readiness.ready else 1,
    examples=(
        "agent19 cdc debezium public.orders public.customers --topic-prefix shop",
        "agent19 cdc debezium public.orders --sink env:WAREHOUSE_URL --write-to connect/   # files to deploy",
    ),
)
def cdc_debezium(ctx: ToolContext, args: DebeziumArgs) -> DebeziumConfig:
    """Generate Debezium/Kafka Connect config and setup SQL for the same capture as cdc_run.

    When one `cdc run` process is not enough (many consumers, replay, fan-out, another sink), the Kafka Connect
    configuration for the same capture: the Debezium PostgreSQL connector (pgoutput, the filtered publication,
    the slot, the table include list, a heartbeat for quiet databases, the snapshot mode, ExtractNewRecordState
    with tombstones kept) and a JDBC sink upserting and deleting by key, plus the setup SQL for the source
    (publication, heartbeat table, REPLICA IDENTITY fixes). Passwords are never written: the configurations read
    them from Kafka Connect's environment. Checked against the live source (the same findings as `cdc check`)."""
    from agent19.db.redact import password_of
    from agent19.etl.cdc_check import check_cdc
    from agent19.etl.debezium import debezium_config, dumps
    from agent19.etl.pipeline import resolve_dsn

    sink = resolve_dsn(args.sink)
    if sink is not None and args.sink is not None and not args.sink.startswith("env:") and password_of(sink):
        raise InputError("the sink DSN carries a password", "pass env:VAR; the password is not written anyway")
    readiness = check_cdc(ctx.db, args.tables, args.publication)
    with ctx.db.read() as conn:
        row = conn.execute("SELECT current_database() AS db").fetchone()
    prefix = args.topic_prefix or (row["db"] if row else "db")
    config = debezium_config(ctx.db.dsn, args.tables, readiness, name=args.name, topic_prefix=prefix, slot=args.slot,
                             publication=args.publication, sink_dsn=sink, heartbeat_ms=args.heartbeat_ms,
                             snapshot_mode=args.snapshot_mode)
    if args.write_to:
        out = Path(args.write_to)
        out.mkdir(parents=True, exist_ok=True)
        (out / "source.json").write_text(dumps(config.source_connector))
        if config.sink_connector:
            (out / "sink.json").write_text(dumps(config.sink_connector))
        (out / "setup.sql").write_text(config.setup_sql)
        config.notes.append(f"written to {out}/: source.json" + (", sink.json" if config.sink_connector else "")
                            + ", setup.sql")
    return config
