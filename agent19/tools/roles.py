"""setup_role (CLI ``agent19 setup-role``): the SQL for the reader login and the migration role."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from agent19.safety.roles import RoleScript
from agent19.tools.registry import ToolContext, tool

if TYPE_CHECKING:
    from agent19.safety.roles import RoleFacts


class RoleArgs(BaseModel):
    kind: Literal["reader", "migration"] = Field(default="reader", description="reader: the least-privilege login "
                                                 "for --read-dsn; migration: the role that owns the schema")
    name: str | None = Field(default=None, description="the role's name (default agent19_reader / agent19_migrator)")
    database: str | None = Field(default=None, description="the database (default: the connected one)")
    schemas: list[str] = Field(default=[], description="the application's schemas (default: every schema that "
                               "is not a system one when connected, else public)")
    all_data: bool = Field(default=False, description="reader: grant pg_read_all_data (every schema, present and "
                           "future) instead of per-schema SELECT; it also reads password hashes in pg_authid")
    createdb: bool = Field(default=False, description="migration: allow CREATE DATABASE (scratch databases for dry "
                           "runs; the role can then create databases, each of which it owns)")


def render_role(r: RoleScript) -> str:
    lines = [r.sql.rstrip(), ""]
    lines += [f"-- note: {n}" for n in r.notes]
    lines.append(f"-- apply: {r.apply}")
    lines.append("-- verify afterwards:")
    lines += [f"--   {line}" for line in r.verify.splitlines()]
    return "\n".join(lines)


@tool(
    name="setup_role", catalog_only=True,
    briefs={
        "kind": "", "name": "", "database": "", "schemas": "", "all_data": "reader: pg_read_all_data", "createdb": "",
    },
    title="Setup roles",
    args=RoleArgs,
    result=RoleScript,
    cli="setup-role",
    render_text=render_role,
    examples=("agent19 setup-role > reader.sql",
              "agent19 setup-role --kind migration --schemas public --schemas billing --createdb",
              "agent19 setup-role --name app_reader --database shop --format json"),
)
def setup_role(ctx: ToolContext, args: RoleArgs) -> RoleScript:
    """Print the SQL creating the login agent19 should read as (or a migration role). Runs nothing.

    kind=reader: LOGIN NOSUPERUSER with SELECT on the application's schemas (present and future
    tables) and pg_read_all_stats only (pg_read_all_data with all_data: it also reads password
    hashes) — never
    pg_read_server_files, pg_write_server_files, pg_execute_server_program or pg_signal_backend —,
    default_transaction_read_only and statement_timeout set on the role; where PUBLIC still grants
    CREATE on a schema or TEMPORARY on the database, the REVOKEs that would close it (commented:
    they change every role). Give agent19 the new login with --read-dsn / AGENT19_READ_DSN: user SQL
    in read-only mode then runs as it. kind=migration: a role that owns the application's objects
    (with ALTER … OWNER TO for the existing ones when connected), CREATE on its schemas, CREATEDB only
    with createdb. The password is read by psql from the environment, never written in the script."""
    from agent19.safety.roles import app_schemas, migration_script, reader_script, role_facts

    name = args.name or ("agent19_reader" if args.kind == "reader" else "agent19_migrator")
    facts: RoleFacts | None = None
    schemas = list(args.schemas)
    if ctx.settings.dsn_value() is not None:
        with ctx.db.read() as conn:
            schemas = schemas or app_schemas(conn)
            facts = role_facts(conn, name, schemas)
    schemas = schemas or ["public"]
    database = args.database or (facts.database if facts else "postgres")
    timeout = f"{ctx.settings.statement_timeout_ms}ms"
    if args.kind == "reader":
        return reader_script(name, database, statement_timeout=timeout, facts=facts, schemas=schemas,
                             all_data=args.all_data)
    return migration_script(name, database, schemas=schemas, createdb=args.createdb, statement_timeout=timeout,
                            facts=facts)
