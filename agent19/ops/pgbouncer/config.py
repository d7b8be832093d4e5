"""``pgbouncer_config``: a pgbouncer.ini and its authentication, generated from the live database.

* **Pool mode from evidence** (:mod:`agent19.ops.pgbouncer.evidence`): ``transaction`` unless
  pg_stat_statements shows session state that transaction pooling breaks — then ``session``, naming each
  feature found, with its fix. Without pg_stat_statements the choice is ``transaction`` with a warning that
  nothing could be checked; when other roles' statements are hidden from the login (no ``pg_read_all_stats``),
  ``transaction`` is said to be unchecked for them, in ``cannot_see`` and a warning, never "shows no …".
* **Sizes within the budget**: ``default_pool_size`` (20, the charter's) and ``reserve_pool_size`` (5) per
  database/user pair, both smaller when the budget's share per pair is (reserve at most a fifth of it); the
  sum over pairs stays under the budget, and ``max_db_connections`` caps each database at its share. A pool
  the caller forces past the budget is an ``error`` finding and nothing is written: flagged before it is used.
* **Timeouts** are the charter's (server_connect_timeout 5, server_idle_timeout 600, server_lifetime 3600,
  reserve_pool_timeout 3) plus PgBouncer's query_wait_timeout 120.
* **Prepared statements**: ``max_prepared_statements = 200`` for PgBouncer ≥ 1.21 (protocol-level prepared
  statements then survive transaction pooling); before 1.21 the clients must not prepare — a finding names the
  driver settings. Observed with PgBouncer 1.18 in tests/test_pgbouncer.py.
* **Authentication**: ``userlist`` (the pooled users' SCRAM/MD5 secrets from pg_authid, superuser only) or
  ``auth_query`` through a dedicated lookup role and a SECURITY DEFINER function. Secrets appear only in the
  files written with ``write_dir`` (mode 0600), never in the result.
* **Admin console**: PgBouncer authenticates a login to its virtual database ``pgbouncer`` from the auth file
  only (auth_query needs a server database to ask; PgBouncer 1.18 hangs such a login until the client's
  timeout), so ``admin_users``/``stats_users`` is :data:`CONSOLE_USER` — a PgBouncer-only login (no
  PostgreSQL role) with a generated password in the auth file and in ``console.pgpass`` (libpq's format,
  0600) for ``PGPASSFILE=… agent19 pgbouncer status --admin-dsn`` :attr:`PgBouncerConfig.admin_dsn` — plus the
  connected login when its own secret is in the userlist. Shown on the real PgBouncer in tests/test_pgbouncer.py.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, Field

from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import literal
from agent19.ops.capacity.measure import pss_schema
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import HealthThresholds
from agent19.ops.pgbouncer.evidence import Budget, SessionFeature, budget, session_features

PoolMode = Literal["auto", "transaction", "session"]
Auth = Literal["auto", "userlist", "auth_query"]
LOOKUP_ROLE = "pgbouncer_auth"
CONSOLE_USER = "pgbouncer_admin"
"""The admin console's login: in the auth file only, never a PostgreSQL role (not pooled, no server login)."""
TIMEOUTS = {"server_connect_timeout": 5, "server_idle_timeout": 600, "server_lifetime": 3600,
            "reserve_pool_timeout": 3, "query_wait_timeout": 120}


class Finding(BaseModel):
    level: Literal["error", "warning", "info"]
    message: str
    fix: str | None = None


class ConfigOptions(BaseModel):
    listen_addr: str = "127.0.0.1"
    listen_port: int = 6432
    databases: list[str] = []
    users: list[str] = []
    pool_mode: PoolMode = "auto"
    pool_size: int | None = None
    reserve_pool_size: int | None = None
    max_client_conn: int = 1000
    other_connections: int = 0
    auth: Auth = "auto"
    pgbouncer_version: str | None = None
    write_dir: str | None = None


class PgBouncerConfig(BaseModel):
    valid: bool = Field(description="false: an error finding (e.g. pools past max_connections); nothing written")
    pool_mode: Literal["transaction", "session"]
    pool_mode_why: str
    session_features: list[SessionFeature] = []
    budget: Budget
    default_pool_size: int
    reserve_pool_size: int
    max_db_connections: int
    pools_total: int = Field(description="server connections all pools may open: pairs x (pool + reserve)")
    pgbouncer_version: str | None = Field(description="of the pgbouncer on this machine (or as given)")
    file_descriptors: int = Field(description="ulimit -n PgBouncer needs: max_client_conn + pools_total + 10 "
                                  "(log, listen sockets)")
    auth: Literal["userlist", "auth_query"]
    auth_users: list[str] = Field(description="users in the auth file (their secrets only in the written file)")
    ini: str = Field(description="pgbouncer.ini")
    setup_sql: str | None = Field(default=None, description="auth_query: the lookup role and function to create "
                                  "(the role's password only in the written file)")
    admin_dsn: str = Field(description="the admin console for agent19 pgbouncer status (password in console.pgpass "
                           "with --write: PGPASSFILE)")
    admin_users: list[str] = Field(description="admin_users and stats_users: logins of the auth file")
    findings: list[Finding] = []
    written: list[str] = []
    cannot_see: list[str] = []
    untrusted_data: bool = True


def installed_version() -> str | None:
    exe = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"PgBouncer (\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr)
    return m.group(1) if m else None


def _at_least(version: str | None, want: tuple[int, int]) -> bool:
    if not version:
        return False
    parts = tuple(int(x) for x in version.split(".")[:2])
    return parts >= want


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise InputError(f"{name!r}: names in a generated pgbouncer.ini are limited to letters, digits, _ . -",
                         "rename, or write that [databases] line by hand")
    return name


def pgbouncer_config(db: Database, o: ConfigOptions) -> PgBouncerConfig:
    params = conninfo_to_dict(db.dsn)
    probe = Probe.open(db, HealthThresholds(statement_timeout_ms=30_000))  # a loaded server: slow, not wrong
    findings: list[Finding] = []
    cannot: list[str] = []
    try:
        me = probe.facts.user
        databases = o.databases or [probe.facts.database]
        users = o.users or [me]
        schema, why = pss_schema(probe)
        features: list[SessionFeature] = []
        aside: dict[str, int] = {}
        if schema:
            features, cannot, aside = session_features(probe, schema)
        else:
            cannot.append(f"session state in the workload: {why}")
        b = budget(probe, o.other_connections)
        secrets_rows: dict[str, str] = {}
        auth = o.auth
        if auth in ("auto", "userlist"):
            try:
                rows = probe.rows("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(ARRAY["
                                  + ", ".join(literal(u) for u in users) + "]::text[])")
                secrets_rows = {r["rolname"]: r["rolpassword"] for r in rows if r["rolpassword"]}
                auth = "userlist"
            except psycopg.errors.InsufficientPrivilege:
                if o.auth == "userlist":
                    raise InputError(f"userlist authentication needs the users' secrets from pg_authid, which {me} "
                                     "may not read", "connect as a superuser, or use --auth auth_query") from None
                auth = "auth_query"
    finally:
        probe.close()
    for u in users:
        if auth == "userlist" and u not in secrets_rows:
            findings.append(Finding(level="warning", message=f"{u} has no password: it cannot log in through "
                                    "PgBouncer with SCRAM/MD5", fix=f"ALTER ROLE {u} PASSWORD '...' (as a DBA)"))
    if o.pool_mode != "auto":
        mode = o.pool_mode
        mode_why = f"{mode} (chosen by the caller)"
        if mode == "transaction" and features:
            findings.append(Finding(level="error", message="transaction pooling breaks what the workload does: "
                                    + "; ".join(f"{f.feature} ({f.calls} calls)" for f in features),
                                    fix="; ".join(f"{f.feature}: {f.fix}" for f in features)))
    elif features:
        mode = "session"
        mode_why = ("session: the workload uses session state that transaction pooling breaks - "
                    + "; ".join(f"{f.feature} ({f.calls} calls)" for f in features)
                    + ". Fix those, then regenerate for transaction pooling")
    elif schema and not cannot:
        mode = "transaction"
        mode_why = ("transaction: pg_stat_statements shows no SET without LOCAL, LISTEN, session advisory lock, "
                    "WITH HOLD cursor, SQL PREPARE or temporary table")
    else:
        mode = "transaction"
        mode_why = ("transaction, unchecked for what is hidden: " + "; ".join(cannot) if schema else
                    "transaction (nothing could be checked: see cannot_see)")
        findings.append(Finding(
            level="warning", message="the workload could not be checked for session state" + (
                ": " + "; ".join(cannot) if schema else ""),
            fix="CREATE EXTENSION pg_stat_statements, let the application run, regenerate" if not schema else
            f"GRANT pg_read_all_stats TO {me} (or generate as a superuser) and regenerate; until then, only "
            "roles known not to keep session state may use this transaction pool"))
    if aside.get("pg_dump"):
        findings.append(Finding(
            level="info", message=f"not counted as the application's: {aside['pg_dump']:,} call(s) of pg_dump's own "
            "session statements (SET statement_timeout = 0, SET row_security = off, PREPARE dump..., e.g. agent19 "
            "backup verify or a nightly dump)", fix="run pg_dump against PostgreSQL directly, never through this pool"))
    if aside.get("application_name") and mode == "transaction":
        findings.append(Finding(
            level="info", message=f"SET application_name ({aside['application_name']:,} calls) not counted: PgBouncer "
            "re-applies each client's own; a client that sends none at connection may show another client's",
            fix="name every client in its connection string (application_name=...)"))
    pairs = len(databases) * len(users)
    share = max(b.available // max(pairs, 1), 0)  # server connections each database/user pair may use
    reserve = o.reserve_pool_size if o.reserve_pool_size is not None else min(5, share // 5)
    pool = o.pool_size if o.pool_size is not None else max(min(20, share - reserve), 1)
    pools_total = pairs * (pool + reserve)
    max_db = len(users) * (pool + reserve)
    if pools_total > b.available:
        findings.append(Finding(
            level="error", message=f"pools exceed the server's connections: {pairs} database/user pair(s) x "
            f"(pool {pool} + reserve {reserve}) = {pools_total} > {b.available} available (max_connections "
            f"{b.max_connections} - superuser_reserved {b.superuser_reserved_connections} - reserved "
            f"{b.reserved_connections} - agent19 {b.agent19} - other direct {b.other_direct})",
            fix=f"lower pool_size to {max(b.available // max(pairs, 1) - reserve, 1)} or raise max_connections "
            "(restart)"))
    version = o.pgbouncer_version or installed_version()
    if version is None:
        findings.append(Finding(level="warning", message="no pgbouncer on this machine: version unknown, "
                                "max_prepared_statements left out", fix="give --pgbouncer-version"))
    elif not _at_least(version, (1, 21)) and mode == "transaction":
        findings.append(Finding(
            level="warning", message=f"PgBouncer {version} < 1.21 does not track protocol-level prepared "
            "statements: in transaction mode a statement prepared on one server connection is missing on the next",
            fix="disable driver-side preparing (psycopg 3: prepare_threshold=None; JDBC: prepareThreshold=0; "
            "asyncpg: statement_cache_size=0; Npgsql: Max Auto Prepare=0) or upgrade to PgBouncer 1.21+"))
    fds = o.max_client_conn + pools_total + 10
    findings.append(Finding(level="info", message=f"PgBouncer needs about {fds} file descriptors",
                            fix=f"LimitNOFILE={fds} in the systemd unit (or ulimit -n {fds})"))
    valid = not any(f.level == "error" for f in findings)
    out = PgBouncerConfig(
        valid=valid, pool_mode=mode, pool_mode_why=mode_why, session_features=features, budget=b,
        default_pool_size=pool, reserve_pool_size=reserve, max_db_connections=max_db, pools_total=pools_total,
        pgbouncer_version=version, file_descriptors=fds, auth=auth, auth_users=sorted(secrets_rows) if
        auth == "userlist" else [LOOKUP_ROLE], ini="", findings=findings, cannot_see=cannot,
        admin_users=[CONSOLE_USER] + ([me] if me in secrets_rows and me != CONSOLE_USER else []),
        admin_dsn=f"postgresql://{CONSOLE_USER}@{_console_host(o.listen_addr)}:{o.listen_port}/pgbouncer")
    directory = Path(o.write_dir).resolve() if o.write_dir else None
    host = str(params.get("host") or "127.0.0.1")
    # auth_type md5 accepts MD5 secrets and, per user, SCRAM ones (PgBouncer then runs SCRAM); scram-sha-256
    # accepts only SCRAM secrets: it is used when every secret is one.
    scram = auth == "userlist" and bool(secrets_rows) and all(v.startswith("SCRAM-SHA-256$")
                                                              for v in secrets_rows.values())
    out.ini = render_ini(out, o, databases, host, str(params.get("port") or 5432), directory, version,
                         "scram-sha-256" if scram else "md5")
    # a re-run into the same directory keeps the secrets it wrote: a running PgBouncer and the role keep matching
    lookup_password = _written_secret(directory, LOOKUP_ROLE) or secrets.token_urlsafe(24)
    console_password = _written_secret(directory, CONSOLE_USER) or secrets.token_urlsafe(24)
    if auth == "auth_query":
        out.setup_sql = setup_sql("'...written to pgbouncer_auth.sql with --write...'")
    if directory is not None and valid:
        out.written = write(directory, out, secrets_rows, lookup_password, console_password)
        out.findings.append(Finding(level="info", message=f"admin console: {CONSOLE_USER} (PgBouncer-only login, its "
                                f"password in {directory / 'console.pgpass'})", fix=f"read it at {out.admin_dsn} "
                                f"with PGPASSFILE={directory / 'console.pgpass'} (pgbouncer status)"))
    elif directory is not None:
        out.findings.append(Finding(level="error", message=f"nothing written to {directory}: fix the errors first"))
    return out


def _written_secret(directory: Path | None, user: str) -> str | None:
    """The plain password of ``user`` in the userlist.txt an earlier run wrote to ``directory`` (None: none)."""
    path = directory / "userlist.txt" if directory else None
    if path is None or not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r'"((?:[^"]|"")*)"\s+"((?:[^"]|"")*)"\s*', line)
        if m and m.group(1).replace('""', '"') == user and not m.group(2).startswith(("SCRAM-SHA-256$", "md5")):
            return m.group(2).replace('""', '"')
    return None


def setup_sql(password_literal: str) -> str:
    """Idempotent: the role is created when missing, and its password set either way (a re-run of the SQL, or
    of ``pgbouncer config`` with a new password, keeps the role and the userlist matching). The password is in a
    top-level statement: an error there does not echo it (a PL/pgSQL error's CONTEXT would)."""
    return f"""-- run as a superuser in every pooled database: the lookup role PgBouncer's auth_query logs in as
-- one transaction: a failed check stops it all, with or without psql's ON_ERROR_STOP; every name qualified, so a
-- database's search_path cannot put another role's view or operator in the place of pg_catalog's
BEGIN;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) '{LOOKUP_ROLE}') THEN
    CREATE ROLE {LOOKUP_ROLE};
  END IF;
END $$;
ALTER ROLE {LOOKUP_ROLE} LOGIN PASSWORD {password_literal};
-- a schema pgbouncer or a get_auth another role made first would stay that role's: it would choose the hashes
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
              WHERE n.nspname OPERATOR(pg_catalog.=) 'pgbouncer' AND NOT r.rolsuper)
     OR EXISTS (SELECT FROM pg_catalog.pg_proc p
                  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) p.proowner
                 WHERE n.nspname OPERATOR(pg_catalog.=) 'pgbouncer' AND p.proname OPERATOR(pg_catalog.=) 'get_auth'
                   AND NOT r.rolsuper) THEN
    RAISE EXCEPTION 'schema pgbouncer or pgbouncer.get_auth exists and is owned by a role that is not a superuser: '
      'it would decide which password PgBouncer checks for every user; look at it, drop it, then run this again';
  END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS pgbouncer;  -- owned by the DBA: the lookup role may only call the function
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO {LOOKUP_ROLE};
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename pg_catalog.text)
RETURNS TABLE (usename pg_catalog.name, passwd pg_catalog.text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$$ SELECT rolname, rolpassword FROM pg_authid WHERE rolname = p_usename AND rolcanlogin AND NOT rolsuper $$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(pg_catalog.text) TO {LOOKUP_ROLE};
COMMIT;
"""


def _console_host(listen_addr: str) -> str:
    first = listen_addr.split(",")[0].strip()
    return "127.0.0.1" if first in ("*", "0.0.0.0", "") else f"[{first}]" if ":" in first else first


def render_ini(c: PgBouncerConfig, o: ConfigOptions, databases: list[str], host: str, port: str,
               directory: Path | None, version: str | None, auth_type: str) -> str:
    lines = [f";; generated by agent19 - pool mode {c.pool_mode_why}", "", "[databases]"]
    lines += [f"{_ident(d)} = host={host} port={port} dbname={_ident(d)} max_db_connections={c.max_db_connections}"
              for d in databases]
    auth_file = str(directory / "userlist.txt") if directory else "/etc/pgbouncer/userlist.txt"
    lines += ["", "[pgbouncer]", f"listen_addr = {o.listen_addr}", f"listen_port = {o.listen_port}"]
    if directory:
        lines += [f"unix_socket_dir = {directory}", f"logfile = {directory / 'pgbouncer.log'}",
                  f"pidfile = {directory / 'pgbouncer.pid'}"]
    lines += [f"auth_type = {auth_type}",
              f"auth_file = {auth_file}", f"admin_users = {', '.join(map(_ident, c.admin_users))}",
              f"stats_users = {', '.join(map(_ident, c.admin_users))}"]
    if c.auth == "auth_query":
        lines += [f"auth_user = {LOOKUP_ROLE}", "auth_query = SELECT usename, passwd FROM pgbouncer.get_auth($1)"]
    lines += ["", f"pool_mode = {c.pool_mode}", f"max_client_conn = {o.max_client_conn}",
              f"default_pool_size = {c.default_pool_size}", f"min_pool_size = {min(5, c.default_pool_size)}",
              f"reserve_pool_size = {c.reserve_pool_size}", f"max_db_connections = {c.max_db_connections}"]
    lines += [f"{k} = {v}" for k, v in TIMEOUTS.items()]
    if c.pool_mode == "session":
        lines.append("server_reset_query = DISCARD ALL")
    if _at_least(version, (1, 21)):
        lines.append("max_prepared_statements = 200")
    lines += ["ignore_startup_parameters = extra_float_digits", "",
              "log_connections = 1", "log_disconnections = 1", "log_pooler_errors = 1", "stats_period = 60", ""]
    return "\n".join(lines)


def write(directory: Path, c: PgBouncerConfig, user_secrets: dict[str, str], lookup_password: str,
          console_password: str) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, text: str) -> None:
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o600)
        written.append(str(path))
    put("pgbouncer.ini", c.ini)
    console = f'"{CONSOLE_USER}" "{console_password}"\n'  # PgBouncer accepts a plain password in the auth file
    if c.auth == "userlist":
        put("userlist.txt", "".join(f'"{u}" "{s}"\n' for u, s in sorted(user_secrets.items())) + console)
    else:
        put("userlist.txt", f'"{LOOKUP_ROLE}" "{lookup_password}"\n' + console)
        put("pgbouncer_auth.sql", setup_sql(literal(lookup_password)))
    console_at = conninfo_to_dict(c.admin_dsn)
    host = str(console_at["host"]).replace(":", "\\:")  # libpq's pgpass escapes ':' (an IPv6 address)
    put("console.pgpass", f"{host}:{console_at['port']}:pgbouncer:{CONSOLE_USER}:{console_password}\n")
    return written
