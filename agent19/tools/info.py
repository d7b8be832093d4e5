"""server_info: which server, which mode, which features work here and why not."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

import agent19
from agent19.config import AccessMode
from agent19.errors import Agent19Error
from agent19.safety.gate import LoginFacts
from agent19.tools.registry import ToolContext, tool


class InfoArgs(BaseModel):
    pass


class Feature(BaseModel):
    name: str
    available: bool | None = Field(description="None: unknown (the reason names the privilege that would tell)")
    reason: str = Field(default="", description="why it is unavailable or unknown, and what would change that")


class ServerInfo(BaseModel):
    agent19_version: str
    mode: AccessMode
    database: str = Field(description="the DSN with its password redacted")
    embedded: bool = Field(description="true when agent19 runs its own embedded PostgreSQL")
    connected: bool
    error: str | None = None
    server_version: int | None = None
    server_version_text: str | None = None
    current_user: str | None = None
    is_superuser: bool | None = None
    login: str | None = Field(default=None, description="the login (session_user); not current_user when a "
                              "database or role setting switches the role: any code run can RESET ROLE to it")
    login_superuser: bool | None = None
    in_recovery: bool | None = Field(default=None, description="true on a standby (replica)")
    statement_timeout: str | None = None
    lock_timeout: str | None = None
    features: list[Feature] = []
    privileges: list[Feature] = Field(default=[], description="what this login may do that changes what the "
                                      "tools can tell (see the README's privileges table)")
    reads: LoginFacts | None = Field(default=None, description="the login user SQL reads run as (--read-dsn, or "
                                     "the main login) and whether it is privileged")
    reads_error: str | None = None


Q_FACTS = """
SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS text,
       current_user AS usr, pg_is_in_recovery() AS recovery,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       session_user AS login, (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) AS login_superuser,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('lock_timeout') AS lock_timeout,
       (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries') AS preload,
       current_setting('wal_level') AS wal_level,
       (SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user) AS createdb,
       (SELECT rolreplication FROM pg_roles WHERE rolname = session_user) AS replication,
       pg_has_role('pg_read_all_settings', 'USAGE') AS read_settings,
       pg_has_role('pg_read_all_stats', 'USAGE') AS read_stats,
       pg_has_role('pg_read_all_data', 'USAGE') AS read_data,
       pg_has_role('pg_signal_backend', 'USAGE') AS signal,
       has_database_privilege(current_database(), 'CREATE') AS create_in_db
"""
UNREADABLE = "\0unreadable"  # pg_settings hides the row from a login without pg_read_all_settings
PRELOAD_UNKNOWN = ("whether it is in shared_preload_libraries is unknown - needs pg_read_all_settings "
                   "(GRANT pg_read_all_settings TO <login>) or a superuser")
Q_EXT = "SELECT name, installed_version FROM pg_available_extensions WHERE name = ANY(%s)"


_INSTALL_HINTS = {
    "hypopg": "the OS package postgresql-<version>-hypopg",
    "pg_stat_statements": "PostgreSQL's contrib package",
}


def _extension_feature(
    name: str, purpose: str, ext: dict[str, str | None], preloaded: str | None = None
) -> Feature:
    """``preloaded``: the server's shared_preload_libraries, when the extension must be in it."""
    if name not in ext:
        return Feature(
            name=name,
            available=False,
            reason=f"{purpose}: the {name} extension is not installed on the server "
            f"(install {_INSTALL_HINTS.get(name, 'it')}; the embedded server has no contrib extensions)",
        )
    if preloaded == UNREADABLE:  # the setting cannot be read by this login
        if ext[name] is None:
            return Feature(name=name, available=None, reason=f"{purpose}: run CREATE EXTENSION {name}; "
                           + PRELOAD_UNKNOWN)
        return Feature(name=name, available=None, reason=f"{purpose}: {PRELOAD_UNKNOWN}")
    if preloaded is not None and name not in {p.strip() for p in preloaded.split(",")}:
        return Feature(
            name=name,
            available=False,
            reason=f"{purpose}: add {name} to shared_preload_libraries and restart the server",
        )
    if ext[name] is None:
        return Feature(name=name, available=False, reason=f"{purpose}: run CREATE EXTENSION {name}")
    return Feature(name=name, available=True)


def render_info(i: ServerInfo) -> str:
    lines = [f"agent19 {i.agent19_version} - mode {i.mode.value}", f"database: {i.database}"]
    if not i.connected:
        lines.append(f"not connected: {i.error}")
        return "\n".join(lines)
    role = "standby" if i.in_recovery else "primary"
    lines.append(f"PostgreSQL {i.server_version_text} ({role}), user {i.current_user}"
                 + (" (superuser)" if i.is_superuser else ""))
    if i.login is not None and i.login != i.current_user:
        lines.append(f"  the login is {i.login}" + (" (superuser)" if i.login_superuser else "")
                     + f": a database or role setting (SET role) makes sessions act as {i.current_user}, and any "
                     "code a session runs can RESET ROLE back to the login's powers")
    lines.append(f"statement_timeout {i.statement_timeout}, lock_timeout {i.lock_timeout}")
    for f in [*i.features, *i.privileges]:
        mark = "?" if f.available is None else "x" if f.available else " "
        lines.append(f"  [{mark}] {f.name}" + (f" - {f.reason}" if f.reason else ""))
    if i.reads is not None:
        r = i.reads
        how = "the reader login (--read-dsn)" if r.separate_reader else "the main login"
        power = ("PRIVILEGED (" + ", ".join((["superuser"] if r.superuser else []) + r.privileged_roles) + ")"
                 + (", allowed by --allow-privileged-reads" if r.allowed_by_opt_in else "")) if r.privileged else \
            "least privilege"
        lines.append(f"user SQL reads run as {r.login}, {how}: {power}")
    elif i.reads_error:
        lines.append(f"user SQL reads: {i.reads_error}")
    return "\n".join(lines)


def _privileges(facts: dict[str, object]) -> list[Feature]:
    su = bool(facts["superuser"])

    def priv(name: str, has: object, lost: str) -> Feature:
        ok = su or bool(has)
        return Feature(name=name, available=ok, reason="" if ok else lost)

    return [
        priv("CREATEDB (scratch databases)", facts["createdb"], "dry runs cannot test statements that refuse a "
             "transaction (CREATE INDEX CONCURRENTLY, VACUUM...) nor re-observe a lock an earlier statement "
             "already holds: ALTER ROLE <login> CREATEDB"),
        priv("pg_read_all_settings", facts["read_settings"], "server settings such as shared_preload_libraries "
             "are reported unknown: GRANT pg_read_all_settings TO <login>"),
        priv("pg_read_all_stats", facts["read_stats"], "other roles' sessions and query statistics are hidden "
             "(blockers, pg_stat_statements of other users): GRANT pg_read_all_stats TO <login>"),
        priv("pg_read_all_data", facts["read_data"], "tables this login cannot read give no row counts from the "
             "data (statistics still do): GRANT pg_read_all_data TO <login>"),
        priv("CREATE in this database", facts["create_in_db"], "a dry run cannot create schemas: "
             "GRANT CREATE ON DATABASE ... TO <login>"),
    ]


def _logical_decoding(facts: dict[str, Any]) -> Feature:
    """Change data capture needs both: the server decoding WAL and a login that may open replication slots."""
    server = facts["wal_level"] == "logical"
    # the login's attributes (session_user): a replication connection is the login's, whatever SET role says
    login = bool(facts["login_superuser"] or facts["replication"])
    why = [] if server else [f"the server: change data capture needs wal_level=logical (it is {facts['wal_level']}); "
                             "set it and restart"]
    if not login:
        why.append(f"this login ({facts['login']}) has no REPLICATION attribute: it may not create replication slots "
                   f"nor stream changes (agent19 cdc) - a superuser runs ALTER ROLE {facts['login']} REPLICATION")
    return Feature(name="logical_decoding", available=server and login, reason="; ".join(why))


@tool(
    name="server_info", catalog_only=True,
    title="Server status",
    args=InfoArgs,
    result=ServerInfo,
    cli="info",
    render_text=render_info,
    exit_code=lambda i: 0 if i.connected else 3,
    examples=("agent19 info", "agent19 info --dsn postgresql://app@localhost/shop --format json"),
)
def server_info(ctx: ToolContext, args: InfoArgs) -> ServerInfo:
    """Which PostgreSQL this is, agent19's access mode and which features work here. Call it first.

    Tell which PostgreSQL agent19 is connected to (version, user, replica or primary), its access mode
    (read-only, dry-run or execute) and which features are available here — and if not, why and what to do.
    Reads only."""
    from agent19.safety.gate import reader_login

    db = ctx.db
    base = ServerInfo(
        agent19_version=agent19.__version__,
        mode=ctx.settings.mode,
        database=db.display_dsn,
        embedded=db.embedded,
        connected=False,
    )
    try:
        with db.read() as conn:
            facts = conn.execute(Q_FACTS).fetchone()
            assert facts is not None
            ext = {r["name"]: r["installed_version"] for r in conn.execute(
                Q_EXT, (["hypopg", "pg_stat_statements", "pgstattuple"],)).fetchall()}
    except Agent19Error as exc:
        return base.model_copy(update={"error": str(exc), "database": db.display_dsn})
    mode = ctx.settings.mode
    features = [
        _extension_feature("hypopg", "index advice verified with hypothetical indexes", ext),
        _extension_feature(
            "pg_stat_statements", "workload analysis from query statistics", ext,
            preloaded=UNREADABLE if facts["preload"] is None else facts["preload"],
        ),
        _logical_decoding(facts),
        Feature(
            name="dry_run",
            available=mode.allows(AccessMode.DRY_RUN),
            reason="" if mode.allows(AccessMode.DRY_RUN) else "start agent19 with --mode dry-run",
        ),
        Feature(
            name="execute",
            available=mode.allows(AccessMode.EXECUTE),
            reason="" if mode.allows(AccessMode.EXECUTE) else "start agent19 with --mode execute",
        ),
    ]
    reads: LoginFacts | None = None
    reads_error: str | None = None
    try:
        reads = reader_login(db)
    except Agent19Error as exc:
        reads_error = f"the reader login cannot connect: {exc}"
    return base.model_copy(
        update={
            "reads": reads,
            "reads_error": reads_error,
            "database": db.display_dsn,
            "connected": True,
            "server_version": facts["num"],
            "server_version_text": facts["text"],
            "current_user": facts["usr"],
            "is_superuser": facts["superuser"],
            "login": facts["login"],
            "login_superuser": facts["login_superuser"],
            "in_recovery": facts["recovery"],
            "statement_timeout": facts["statement_timeout"],
            "lock_timeout": facts["lock_timeout"],
            "features": features,
            "privileges": _privileges(facts),
        }
    )
