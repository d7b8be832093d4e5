"""pgbouncer_config (``agent19 pgbouncer config``) and pgbouncer_status (``agent19 pgbouncer status``)."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from agent19.errors import InputError
from agent19.ops.pgbouncer.config import Auth, PgBouncerConfig, PoolMode
from agent19.ops.pgbouncer.status import PgBouncerStatus
from agent19.tool_names import argument
from agent19.tools.registry import ToolContext, tool


class ConfigArgs(BaseModel):
    write: str | None = Field(default=None, description="directory to write pgbouncer.ini and its auth file(s) "
                              "to (mode 0600; secrets are only there, never in the output)")
    listen_port: int = Field(default=6432, ge=1, le=65535, description="port PgBouncer listens on")
    listen_addr: str = Field(default="127.0.0.1", description="address PgBouncer listens on (* for all)")
    databases: list[str] = Field(default=[], description="databases to pool (default: the connected one)")
    users: list[str] = Field(default=[], description="users to pool (default: the connected login)")
    pool_mode: PoolMode = Field(default="auto", description="auto: transaction unless the workload uses session "
                                "state (named in the result)")
    pool_size: int | None = Field(default=None, ge=1, description="default_pool_size (default: 20, or less when "
                                  "the server's budget is smaller)")
    reserve_pool_size: int | None = Field(default=None, ge=0, description="reserve_pool_size (default 5)")
    max_client_conn: int = Field(default=1000, ge=1, description="client connections PgBouncer accepts")
    other_connections: int = Field(default=0, ge=0, description="direct server connections that bypass PgBouncer "
                                   "(monitoring, migrations, cron): kept out of the pools' budget")
    auth: Auth = Field(default="auto", description="userlist (secrets from pg_authid: superuser) or auth_query "
                       "(a lookup role; its SQL is written with --write); auto: userlist when readable")
    pgbouncer_version: str | None = Field(default=None, description="the PgBouncer version it is for (default: "
                                          "the one installed here)")


def render_config(c: PgBouncerConfig) -> str:
    out = [c.ini.rstrip(), "", f"pool mode: {c.pool_mode_why}",
           f"budget: {c.pools_total} of {c.budget.available} server connections available "
           f"(max_connections {c.budget.max_connections})"]
    out += [f"{f.level.upper()}: {f.message}" + (f"\n  fix: {f.fix}" if f.fix else "") for f in c.findings]
    out += [f"cannot see: {x}" for x in c.cannot_see]
    out += [f"wrote {w}" for w in c.written]
    if c.setup_sql and not c.written:
        out.append(f"auth_query: run with {argument('write')} DIR to get pgbouncer_auth.sql (the lookup role and its "
                   "password)")
    if not c.written:
        out.append(f"admin console: {c.admin_users[0]} is a PgBouncer-only login: run with {argument('write')} DIR to "
                   "get its auth-file line and console.pgpass")
    return "\n".join(out)


@tool(
    briefs={
        "write": "directory", "listen_port": "", "listen_addr": "", "databases": "", "users": "", "pool_mode": "",
        "pool_size": "", "reserve_pool_size": "", "max_client_conn": "",
        "other_connections": "connections bypassing PgBouncer", "auth": "", "pgbouncer_version": "",
    },
    name="pgbouncer_config", catalog_only=True, title="PgBouncer config", args=ConfigArgs,
    result=PgBouncerConfig, cli="pgbouncer config", render_text=render_config,
    read_only=False,  # --write writes pgbouncer.ini and the auth file
    exit_code=lambda c: 0 if c.valid else 1,
    examples=("agent19 pgbouncer config", "agent19 pgbouncer config --write /etc/pgbouncer --listen-port 6432",
              "agent19 pgbouncer config --pool-size 30 --other-connections 10 --format json"),
)
def pgbouncer_config_tool(ctx: ToolContext, args: ConfigArgs) -> PgBouncerConfig:
    """Generate pgbouncer.ini and its auth file from the live database, pool mode and sizes from evidence.

    Generate pgbouncer.ini and its authentication (userlist, or auth_query with a lookup role) from the
    live database. The pool mode is chosen from evidence: pg_stat_statements is scanned for session state
    that transaction pooling breaks (SET without LOCAL, LISTEN, session advisory locks, WITH HOLD cursors,
    SQL PREPARE, temporary tables), named when found. Pool sizes keep the sum of all pools under
    max_connections minus superuser_reserved_connections, agent19's own connections and the direct
    connections you declare; max_db_connections is set; timeouts are the charter's; max_prepared_statements
    for PgBouncer 1.21+, and for older ones the driver settings that avoid prepared statements. A config
    whose pools exceed the server is flagged (valid=false, exit 1) and not written. Secrets only go to the
    written files (0600)."""
    from agent19.ops.pgbouncer.config import ConfigOptions, pgbouncer_config

    return pgbouncer_config(ctx.db, ConfigOptions(
        listen_addr=args.listen_addr, listen_port=args.listen_port, databases=args.databases, users=args.users,
        pool_mode=args.pool_mode, pool_size=args.pool_size, reserve_pool_size=args.reserve_pool_size,
        max_client_conn=args.max_client_conn, other_connections=args.other_connections, auth=args.auth,
        pgbouncer_version=args.pgbouncer_version, write_dir=args.write))


class StatusArgs(BaseModel):
    admin_dsn: str | None = Field(default=None, description="DSN of PgBouncer's admin console (database "
                                  "pgbouncer, a login in admin_users/stats_users), e.g. "
                                  "postgresql://pgbouncer_admin@127.0.0.1:6432/pgbouncer (the config's admin_dsn); "
                                  "default PGBOUNCER_ADMIN_DSN. Keep the password in PGPASSFILE (the config's "
                                  "console.pgpass) or PGPASSWORD, not here")
    samples: int = Field(default=3, ge=1, le=60, description="readings of SHOW POOLS")
    interval: float = Field(default=1.0, ge=0, le=60, description="seconds between readings")


def render_status(s: PgBouncerStatus) -> str:
    out = [f"{s.version or 'PgBouncer'} at {s.admin}: {s.clients} clients, {s.servers} server connections, "
           f"{s.readings} readings {s.interval_s:g} s apart"]
    for p in s.pools:
        out.append(f"{p.status:<9} {p.database}/{p.user} ({p.pool_mode}): {p.cl_active} active, {p.cl_waiting} "
                   f"waiting (in {p.waiting_in_readings}/{s.readings} readings, max wait {p.max_wait_s} s); "
                   f"servers {p.sv_active} active, {p.sv_idle} idle of {p.pool_size} ({p.saturation_pct} %)")
        if p.fix:
            out.append(f"          fix: {p.fix}")
    return "\n".join(out)


@tool(
    briefs={
        "admin_dsn": "", "samples": "", "interval": "seconds",
    },
    name="pgbouncer_status", title="PgBouncer pools",
    args=StatusArgs, result=PgBouncerStatus, cli="pgbouncer status", render_text=render_status,
    exit_code=lambda s: 1 if s.problems else 0,
    examples=("PGPASSFILE=./pgbouncer/console.pgpass agent19 pgbouncer status --admin-dsn "
              "postgresql://pgbouncer_admin@127.0.0.1:6432/pgbouncer",),
)
def pgbouncer_status_tool(ctx: ToolContext, args: StatusArgs) -> PgBouncerStatus:
    """Read PgBouncer's admin console: per pool, waiting clients and saturation, with the fix.

    Read a running PgBouncer's admin console (SHOW POOLS, STATS, CLIENTS, SERVERS, DATABASES) a few
    times and report per pool: clients waiting for a server connection (sustained when cl_waiting > 0 in
    every reading), the longest wait, and saturation (server connections open / pool size), with the fix.
    Exit 1 when a pool waits or is saturated. Does not need agent19's database connection."""
    from agent19.ops.pgbouncer.status import pgbouncer_status

    dsn = args.admin_dsn or os.environ.get("PGBOUNCER_ADMIN_DSN")
    if not dsn:
        raise InputError("no admin console DSN", f"give {argument('admin_dsn')} "
                         "postgresql://USER@HOST:6432/pgbouncer or set PGBOUNCER_ADMIN_DSN")
    return pgbouncer_status(dsn, samples=args.samples, interval_s=args.interval)
