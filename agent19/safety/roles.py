"""The SQL for the logins agent19 should run as: a least-privilege reader, and a migration role.

**Reader** (``--read-dsn``): user SQL in read-only mode (run_sql, explain_query's reads, the index
advisor's plans) runs as this login, so that what a statement hides (views, functions, casts, SQL
in strings) meets the server's permission checks, not only agent19's parser. It is its own LOGIN
(``SET ROLE`` is no boundary while the session user is a superuser: SQL can switch back), with
SELECT on the application's schemas (present tables and, through default privileges, future ones)
and ``pg_read_all_stats`` (statistics views) — never ``pg_read_server_files``,
``pg_write_server_files``, ``pg_execute_server_program`` or ``pg_signal_backend``; no CREATE on any
schema; ``default_transaction_read_only`` and a ``statement_timeout`` set on the role itself, so they
hold whatever client connects with it.

Not ``pg_read_all_data`` by default: observed on PostgreSQL 15, a member of it reads
``pg_authid.rolpassword`` (every role's password hash) and ``pg_user_mapping.umoptions`` (foreign
servers' passwords) — it grants SELECT on system catalogs too. ``all_data=True`` uses it anyway
(every schema, no grants to maintain), saying what it exposes.

Privileges every role inherits from ``PUBLIC`` (``CREATE`` on the ``public`` schema before
PostgreSQL 15, ``TEMPORARY`` on databases) cannot be taken from one role alone: the script lists
the ``REVOKE … FROM PUBLIC`` that would, commented out, with what they change for every other role.

**Migration role** (``--kind migration``): owns the application's schema objects (ALTER needs the
owner), may create in the application's schemas, nothing beyond; ``CREATEDB`` only when asked
(dry runs make scratch databases with it — and it can then create databases, each of which it owns).

The password never appears in the script: psql reads it from the environment (``\\getenv``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agent19.migrate.patterns.sqlnames import ident, literal

RoleKind = Literal["reader", "migration"]
READER_GRANTS = ("pg_read_all_data", "pg_read_all_stats")
NEVER_GRANTED = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "pg_signal_backend",
                 "pg_write_all_data", "pg_create_subscription")
PASSWORD_ENV = {"reader": "AGENT19_READER_PASSWORD", "migration": "AGENT19_MIGRATOR_PASSWORD"}


class RoleFacts(BaseModel):
    """What the connected server says about where the role would get more than the script grants."""

    server_version: int
    database: str
    role_exists: bool
    public_create_schemas: list[str] = Field(default=[], description="schemas where PUBLIC may CREATE")
    public_temp: bool = Field(default=False, description="PUBLIC may create temporary tables in the database")
    owned_objects: list[tuple[str, str, str]] = Field(
        default=[], description="(kind, schema-qualified name, owner) of the application's objects")
    program_tables: list[str] = Field(default=[], description="foreign tables of wrappers other than postgres_fdw "
                                      "(file_fdw runs its program or reads a server file when read)")


class RoleScript(BaseModel):
    kind: RoleKind
    role: str
    database: str
    sql: str = Field(description="the script to run as a superuser (psql reads the password from the environment)")
    apply: str = Field(description="how to apply it and point agent19 at the new login")
    notes: list[str] = []
    verify: str = Field(description="a query that shows the role's powers afterwards")


Q_FACTS = """
SELECT current_setting('server_version_num')::int AS version, current_database() AS database,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(role)s) AS role_exists,
       ARRAY(SELECT nspname::text FROM pg_namespace
              WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'
                AND has_schema_privilege('public', oid, 'CREATE') ORDER BY 1) AS public_create,
       has_database_privilege('public', current_database(), 'TEMPORARY') AS public_temp
"""
Q_OWNED = """
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      ELSE 'TABLE' END AS kind,
       format('%%I.%%I', n.nspname, c.relname) AS name, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname = ANY(%(schemas)s)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype IN ('e', 'a', 'i'))
 ORDER BY 2
"""


Q_APP_SCHEMAS = """
SELECT nspname::text AS name FROM pg_namespace n
 WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
                   AND d.deptype = 'e')
 ORDER BY 1
"""


def app_schemas(conn: Any) -> list[str]:
    """The database's own schemas (not system, not an extension's)."""
    return [r["name"] for r in conn.execute(Q_APP_SCHEMAS).fetchall()]


Q_FOREIGN = """
SELECT format('%%I.%%I', n.nspname, c.relname) AS name
  FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_foreign_server s ON s.oid = ft.ftserver JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
 WHERE n.nspname = ANY(%(schemas)s) AND w.fdwname <> 'postgres_fdw' ORDER BY 1
"""


def role_facts(conn: Any, role: str, schemas: list[str]) -> RoleFacts:
    row = conn.execute(Q_FACTS, {"role": role}).fetchone()
    owned = [(r["kind"], r["name"], r["owner"]) for r in conn.execute(Q_OWNED, {"schemas": schemas}).fetchall()]
    foreign = [r["name"] for r in conn.execute(Q_FOREIGN, {"schemas": schemas}).fetchall()]
    return RoleFacts(server_version=row["version"], database=row["database"], role_exists=row["role_exists"],
                     public_create_schemas=list(row["public_create"]), public_temp=row["public_temp"],
                     owned_objects=owned, program_tables=foreign)


def _password(kind: RoleKind) -> tuple[str, str]:
    var = PASSWORD_ENV[kind]
    return f"\\getenv role_password {var}\n", ":'role_password'"


def _public_tightening(role: str, database: str, facts: RoleFacts | None, schemas: list[str]) -> list[str]:
    if facts is None:
        return [
            "-- Through PUBLIC every role may CREATE in schema public (before PostgreSQL 15) and create temporary",
            "-- tables. Only a REVOKE from PUBLIC removes that, for every role; run it if nothing relies on it:",
            "-- REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
            f"-- REVOKE TEMPORARY ON DATABASE {ident(database)} FROM PUBLIC;",
        ]
    lines: list[str] = []
    for schema in facts.public_create_schemas:
        lines += [f"-- PUBLIC may CREATE in schema {schema}, so {role} could too. This REVOKE applies to every role",
                  "-- that relies on PUBLIC (grant CREATE to those that need it first):",
                  f"-- REVOKE CREATE ON SCHEMA {ident(schema)} FROM PUBLIC;"]
    if facts.public_temp:
        lines += [f"-- PUBLIC may create temporary tables in {database} (the default), so {role} could create",
                  "-- temporary objects (they vanish with its session; agent19 discards them after each call).",
                  "-- To forbid them, for every role relying on PUBLIC:",
                  f"-- REVOKE TEMPORARY ON DATABASE {ident(database)} FROM PUBLIC;"]
    return lines


def _schema_grants(r: str, schemas: list[str], owners: list[str]) -> list[str]:
    lines = []
    for schema in schemas:
        s = ident(schema)
        lines += [f"GRANT USAGE ON SCHEMA {s} TO {r};",
                  f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r};",
                  f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};"]
        for owner in owners or ["CURRENT_USER"]:
            who = owner if owner == "CURRENT_USER" else ident(owner)
            lines.append(f"ALTER DEFAULT PRIVILEGES FOR ROLE {who} IN SCHEMA {s} GRANT SELECT ON TABLES TO {r};")
    return lines


def _role_settings(r: str, statement_timeout: str) -> list[str]:
    return [f"ALTER ROLE {r} SET default_transaction_read_only = on;",
            f"ALTER ROLE {r} SET statement_timeout = {literal(statement_timeout)};",
            f"ALTER ROLE {r} SET lock_timeout = '1s';",
            f"ALTER ROLE {r} SET idle_in_transaction_session_timeout = '1min';"]


EMBEDDED_READER = "agent19_reader"


def ensure_embedded_reader(conn: Any, *, statement_timeout: str) -> str:
    """On agent19's own embedded server (trust authentication on its private socket), create or refresh
    the reader login with the same grants as the printed script, without a password; returns its name.
    ``conn``: a superuser session in autocommit (a READ WRITE transaction is opened here)."""
    r = ident(EMBEDDED_READER)
    conn.execute("BEGIN READ WRITE")
    try:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (EMBEDDED_READER,)).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
        database = conn.execute("SELECT current_database() AS d").fetchone()["d"]
        schemas = app_schemas(conn)
        owners = sorted({o for _, _, o in role_facts(conn, EMBEDDED_READER, schemas).owned_objects})
        for sql in [f"GRANT pg_read_all_stats TO {r};", f"GRANT CONNECT ON DATABASE {ident(database)} TO {r};",
                    *_schema_grants(r, schemas, owners), *_role_settings(r, statement_timeout)]:
            conn.execute(sql.encode())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return EMBEDDED_READER


def reader_script(role: str, database: str, *, statement_timeout: str, facts: RoleFacts | None = None,
                  schemas: list[str] | None = None, all_data: bool = False) -> RoleScript:
    r, db = ident(role), ident(database)
    getenv, password = _password("reader")
    schemas = schemas or ["public"]
    grants = ", ".join(READER_GRANTS) if all_data else "pg_read_all_stats"
    owners = sorted({owner for _, _, owner in facts.owned_objects}) if facts else []
    lines = [
        f"-- agent19 reader login: reads data and statistics, nothing else (database {database})",
        getenv.rstrip(),
        f"CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT",
        f"  CONNECTION LIMIT 8 PASSWORD {password};",
        f"GRANT {grants} TO {r};",
        f"GRANT CONNECT ON DATABASE {db} TO {r};",
    ]
    if not all_data:
        lines += _schema_grants(r, schemas, owners)
    for table in facts.program_tables if facts else []:
        lines.append(f"REVOKE SELECT ON {table} FROM {r};  -- file_fdw and the like run a program or read a "
                     "server file when read")
    lines += [
        *_role_settings(r, statement_timeout),
        *_public_tightening(role, database, facts, schemas),
    ]
    reads = "every table (pg_read_all_data)" if all_data else f"the tables of {', '.join(schemas)}"
    notes = [
        f"{role} reads {reads} and statistics (pg_read_all_stats); it is never granted "
        + ", ".join(NEVER_GRANTED) + ".",
        ("pg_read_all_data also lets it read pg_authid (every role's password hash) and pg_user_mapping (foreign "
         "servers' passwords): agent19 refuses those relations, but anything else connecting as this login does "
         "not." if all_data else
         "Not pg_read_all_data: it would also let the login read pg_authid (password hashes) and pg_user_mapping "
         "(foreign servers' passwords). Tables created later by another owner need a grant (or "
         "ALTER DEFAULT PRIVILEGES FOR ROLE <that owner>)."),
        "It is its own login: SET ROLE is no boundary while the session user is a superuser.",
        "statement_timeout and default_transaction_read_only are set on the role: they hold for any client.",
    ]
    if facts is not None and facts.program_tables:
        notes.append("foreign tables " + ", ".join(facts.program_tables) + " run a program or read a server file "
                     "as the server's OS user when read (observed with file_fdw, even for a pg_read_all_data member): "
                     + ("pg_read_all_data reads them whatever is revoked - do not use --all-data here"
                        if all_data else "the script revokes SELECT on them; grant nothing on such tables later"))
    if facts is not None and facts.role_exists:
        notes.append(f"a role named {role} already exists: CREATE ROLE will fail; drop it or choose --name")
    return RoleScript(kind="reader", role=role, database=database, sql="\n".join(lines) + "\n",
                      apply=_apply("reader", role, database), notes=notes, verify=_verify(role))


def migration_script(role: str, database: str, *, schemas: list[str], createdb: bool, statement_timeout: str,
                     facts: RoleFacts | None = None) -> RoleScript:
    r, db = ident(role), ident(database)
    getenv, password = _password("migration")
    lines = [
        f"-- agent19 migration role: owns the application's objects in {', '.join(schemas)} (database {database})",
        getenv.rstrip(),
        f"CREATE ROLE {r} LOGIN NOSUPERUSER {'CREATEDB' if createdb else 'NOCREATEDB'} NOCREATEROLE NOREPLICATION "
        f"NOBYPASSRLS INHERIT PASSWORD {password};",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {r};",
        f"GRANT pg_read_all_stats TO {r};",
        f"ALTER ROLE {r} SET lock_timeout = '5s';",
        f"ALTER ROLE {r} SET statement_timeout = {literal(statement_timeout)};",
    ]
    for schema in schemas:
        lines.append(f"GRANT USAGE, CREATE ON SCHEMA {ident(schema)} TO {r};")
    if facts is not None and facts.owned_objects:
        lines.append("-- ALTER TABLE and friends need the owner: hand the existing objects over")
        lines += [f"ALTER {kind} {name} OWNER TO {r};" for kind, name, owner in facts.owned_objects if owner != role]
    else:
        lines.append("-- hand existing objects over (ALTER needs the owner), e.g. for each table:")
        lines.append(f"-- ALTER TABLE public.orders OWNER TO {r};")
    notes = [
        "The migration role owns the schema objects: ALTER TABLE, CREATE INDEX and DROP need the owner.",
        "Applications should connect as another role, granted SELECT/INSERT/UPDATE/DELETE by the migration role "
        "(ALTER DEFAULT PRIVILEGES FOR ROLE ... GRANT ...), so a compromised application cannot change the schema.",
        ("CREATEDB: dry runs can make scratch databases (CREATE DATABASE ... TEMPLATE needs the owner of the source "
         "database, or use --scratch-copy schema); the role can then create any number of databases, each of which "
         "it owns, and fill the disk." if createdb else
         "NOCREATEDB: dry runs whose statements cannot run in a transaction need a scratch database; give "
         "--createdb to allow it (the role can then create databases, each of which it owns)."),
    ]
    return RoleScript(kind="migration", role=role, database=database, sql="\n".join(lines) + "\n",
                      apply=_apply("migration", role, database), notes=notes, verify=_verify(role))


def _apply(kind: RoleKind, role: str, database: str) -> str:
    var = PASSWORD_ENV[kind]
    dsn_var, flag = ("AGENT19_READ_DSN", "--read-dsn") if kind == "reader" else ("DATABASE_URL", "--dsn")
    return (f"save the script (agent19 setup-role{' --kind migration' if kind == 'migration' else ''} > {kind}.sql), "
            f"then as a superuser: {var}='<new password>' psql -d {database} -v ON_ERROR_STOP=1 -f {kind}.sql "
            f"(psql 15+ reads the password from {var}; it is never on a command line or in the script). "
            f"Then give agent19 the new login: {dsn_var}=postgresql://{role}@<host>/{database} (or {flag}), "
            "with its password in ~/.pgpass or PGPASSWORD. agent19 prints this script and never applies it: "
            "creating roles is a cluster-wide change that belongs to a DBA.")


def _verify(role: str) -> str:
    never = ", ".join(literal(r) for r in NEVER_GRANTED)
    return (f"SELECT r.rolname, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolbypassrls, r.rolconfig,\n"
            f"       ARRAY(SELECT g FROM unnest(ARRAY[{never}]) g "
            f"WHERE CASE WHEN to_regrole(g) IS NOT NULL THEN pg_has_role(r.oid, g, 'MEMBER') END) AS too_much\n"
            f"  FROM pg_roles r WHERE r.rolname = {literal(role)};")
