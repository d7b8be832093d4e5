"""What a dry run must never do: change the cluster outside the target database, or reach other servers.

A dry run's rollback undoes what happens inside one database. It cannot undo — and a scratch
database, where statements *commit*, would keep — what a statement does to the whole server:

* **Cluster-wide statements** (:func:`cluster_effect`): roles and their attributes, passwords and
  settings (``CREATE/ALTER/DROP ROLE|USER|GROUP``, ``ALTER ROLE … SET``), role membership
  (``GRANT/REVOKE role``), databases (``CREATE/DROP/ALTER DATABASE``, ``… SET``, ``RENAME``,
  ``OWNER``, ``GRANT … ON DATABASE``), tablespaces, subscriptions (``CREATE SUBSCRIPTION`` also
  creates a slot on the publisher), ``ALTER SYSTEM``, parameter privileges (``GRANT SET ON
  PARAMETER``), comments and security labels on shared objects, ``DROP OWNED`` / ``REASSIGN
  OWNED`` (they reach privileges and owners of databases and tablespaces). These are never run —
  neither in the target's transaction nor in a scratch database — and are reported as not run,
  with what they would do. Publications are per-database catalog rows that roll back like tables:
  they run.
* **Escapes** (:func:`escape_refusal`): calls whose effect a rollback cannot undo (replication
  slots, signals, server files, session advisory locks… — the choke point's ``TRIAL`` check,
  :func:`agent19.safety.gate.admit`), and dblink / postgres_fdw in any form: a direct call, a
  function whose body (followed through the functions it names) uses them, a view or trigger on a
  relation the statement names that leads there, a foreign table, ``IMPORT FOREIGN SCHEMA``. dblink
  opens its own connection and commits there; postgres_fdw's remote transaction commits when a
  scratch database's replay commits. Refused statements are not run and fail the dry run.
* **Untestable** (same check, :mod:`agent19.safety.trial`): code the statement reaches that calls
  ``setval`` (sequences are not transactional), runs SQL built at run time (``EXECUTE``, ``query_to_xml``…)
  or is written in a language the guard cannot read (C outside built-ins and known extensions, untrusted PLs…): not run,
  reported as not tested (``untested``: not a failure, not a pass) with why; statements that then fail
  for want of what it would have made say "depends on statement N". Every statement is untestable when
  the database has an object the server runs on its own (trigger, constraint, default, policy, view,
  operator…) that leads to such code or to an escape (:mod:`agent19.safety.closure`). Default-deny: the operator's
  ``--allow-unreadable-code`` lets unreadable code run (``setval`` never), under the checks below; such a
  statement's result says so (a note and an ``info`` finding: :func:`agent19.safety.trial.allowed_note`).
* **At run time** (:func:`shared_writes`): whatever a statement hides (a ``DO`` block, a function,
  a trigger) it cannot write a shared catalog without the server showing a lock on it. A statement
  that did is rolled back to its savepoint (in the target) or its transaction (in a scratch
  database) and reported as not run.
* **Checked afterwards** (:func:`fingerprint`, :func:`diff_cluster`): roles and their attributes
  (password hashes compared as digests), memberships, role and database settings, databases,
  tablespaces, replication slots, subscriptions, parameter privileges, shared comments, and the
  settings ``ALTER SYSTEM`` wrote; in the target, every sequence the login can read
  (:func:`agent19.migrate.dryrun.schema_diff.diff_snapshots`: one moved backward is a difference).
  Any difference makes ``target_unchanged`` false.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import psycopg
from pydantic import BaseModel

from agent19.db import catalog_first
from agent19.db.connection import Database
from agent19.migrate.parse import Statement
from agent19.safety.body_effects import SHARED_CATALOGS as EVERY_SHARED
from agent19.safety.function_facts import ESCAPING, SEQUENCE_FUNCTIONS
from agent19.safety.trial import TrialCatalog, Untestable, named_functions
from agent19.sqltree import walk

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

NOTE_PREFIX = "acts on the whole server, not one database: never run by a dry run"

# catalogs shared by every database of the cluster that a statement writes only to change the cluster
# (pg_shdepend is left out: every object a non-bootstrap role owns adds a row there, per database)
SHARED_CATALOGS = tuple(c for c in EVERY_SHARED if c != "pg_shdepend")
_WRITE_MODES = ("RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock",
                "AccessExclusiveLock")
_SHARED_OBJECTS = {"OBJECT_DATABASE": "database", "OBJECT_ROLE": "role", "OBJECT_TABLESPACE": "tablespace",
                   "OBJECT_SUBSCRIPTION": "subscription", "OBJECT_PARAMETER_ACL": "parameter"}
# the write locks this session holds on shared catalogs (constants only: usable without parameters)
_HELD_SHARED_WRITES = (
    "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation "
    "WHERE l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() "
    "AND l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.database OPERATOR(pg_catalog.=) 0 "
    f"AND l.mode OPERATOR(pg_catalog.=) ANY ('{{{','.join(_WRITE_MODES)}}}'::pg_catalog.text[]) "
    f"AND c.relname OPERATOR(pg_catalog.=) ANY ('{{{','.join(SHARED_CATALOGS)}}}'::pg_catalog.name[])")
Q_SHARED_WRITES = f"SELECT DISTINCT c.relname::pg_catalog.text {_HELD_SHARED_WRITES} ORDER BY 1"
Q_WROTE_SHARED = f"SELECT 1 {_HELD_SHARED_WRITES}"
"""The guard's test in a watched session (:func:`guarded`), run by the server right after the user's statement."""


def _roles(specs: list[dict[str, Any]] | None) -> str:
    names = []
    for spec in specs or []:
        r = spec.get("RoleSpec", spec)
        names.append(r.get("rolename") or r.get("roletype", "?").removeprefix("ROLESPEC_").lower())
    return ", ".join(names) or "?"


def _options(f: dict[str, Any]) -> str:
    names = [o.get("DefElem", {}).get("defname", "") for o in f.get("options") or []]
    return f" ({', '.join(n.upper() for n in names if n)})" if names else ""


def _setting(f: dict[str, Any]) -> str:
    s = f.get("setstmt") or {}
    kind = s.get("kind", "")
    if kind == "VAR_RESET_ALL":
        return "reset every setting"
    if kind == "VAR_RESET":
        return f"reset {s.get('name')}"
    return f"set {s.get('name')}"


def _shared(relation: dict[str, Any]) -> str | None:
    """The shared catalog (or its index) a RangeVar names, or a TOAST table (a shared catalog's among them), or
    None."""
    name = str(relation.get("relname", ""))
    if relation.get("schemaname") == "pg_toast":
        return f"pg_toast.{name}"
    if relation.get("schemaname") not in (None, "pg_catalog"):
        return None
    return name if any(name == c or name.startswith(c + "_") for c in EVERY_SHARED) else None


def _first_shared(relations: list[dict[str, Any]]) -> str | None:
    return next((s for r in relations if (s := _shared(r))), None)


def _rewrites_shared(node: str, f: dict[str, Any]) -> str | None:
    """What of the shared catalogs a VACUUM FULL or a REINDEX gives a new file, or None."""
    if node == "VacuumStmt":
        if not any(o.get("DefElem", {}).get("defname") == "full" for o in f.get("options") or []):
            return None
        rels = [r.get("VacuumRelation", {}).get("relation") or {} for r in f.get("rels") or []]
        if not rels:
            return "every table of the database, shared catalogs included (VACUUM FULL)"
        return _first_shared(rels)
    if f.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
        return "the indexes of the system catalogs, shared ones included"
    return _shared(f.get("relation") or {})


def cluster_effect(stmt: Statement) -> str | None:
    """What ``stmt`` would do to the whole server, or None when it acts inside one database."""
    node, f = stmt.node, stmt.fields
    role = (f.get("role") or {}).get("rolename") if isinstance(f.get("role"), dict) else f.get("role")
    match node:
        case "CreateRoleStmt":
            kind = f.get("stmt_type", "ROLESTMT_ROLE").removeprefix("ROLESTMT_").lower()
            return f"would create {kind} {f.get('role')}{_options(f)}"
        case "AlterRoleStmt":
            return f"would change role {role}'s attributes{_options(f)}"
        case "AlterRoleSetStmt":
            where = f" in database {f['database']}" if f.get("database") else ""
            return f"would {_setting(f)} for role {role or 'ALL'}{where} (pg_db_role_setting)"
        case "DropRoleStmt":
            return f"would drop role(s) {_roles(f.get('roles'))}"
        case "GrantRoleStmt":
            granted = ", ".join(a.get("AccessPriv", {}).get("priv_name", "?") for a in f.get("granted_roles", []))
            verb = "grant membership in" if f.get("is_grant") else "revoke membership in"
            return f"would {verb} {granted} {'to' if f.get('is_grant') else 'from'} {_roles(f.get('grantee_roles'))}"
        case "CreatedbStmt":
            return f"would create database {f.get('dbname')}"
        case "DropdbStmt":
            return f"would drop database {f.get('dbname')}"
        case "AlterDatabaseStmt" | "AlterDatabaseRefreshCollStmt":
            return f"would alter database {f.get('dbname')}{_options(f)}"
        case "AlterDatabaseSetStmt":
            return f"would {_setting(f)} for database {f.get('dbname')} (pg_db_role_setting)"
        case "CreateTableSpaceStmt" | "DropTableSpaceStmt" | "AlterTableSpaceOptionsStmt":
            verb = {"CreateTableSpaceStmt": "create", "DropTableSpaceStmt": "drop"}.get(node, "alter")
            return f"would {verb} tablespace {f.get('tablespacename')}"
        case "CreateSubscriptionStmt" | "AlterSubscriptionStmt" | "DropSubscriptionStmt":
            verb = {"CreateSubscriptionStmt": "create", "DropSubscriptionStmt": "drop"}.get(node, "alter")
            return (f"would {verb} subscription {f.get('subname')} (a cluster-wide catalog; creating or dropping "
                    "one also creates or drops a replication slot on the publisher)")
        case "AlterSystemStmt":
            return f"would {_setting(f)} in postgresql.auto.conf for the whole server"
        case "DropOwnedStmt":
            return (f"would drop what {_roles(f.get('roles'))} own(s) in this database and revoke their privileges, "
                    "including on databases and tablespaces")
        case "ReassignOwnedStmt":
            return (f"would give what {_roles(f.get('roles'))} own(s) - this database's objects, and databases and "
                    f"tablespaces - to {(f.get('newrole') or {}).get('rolename', '?')}")
        case "LockStmt":  # every login of the server waits (review r36 F6)
            if shared := _first_shared([r.get("RangeVar", {}) for r in f.get("relations") or []]):
                return f"would lock {shared}, a catalog every database shares (every login waits)"
        case "VacuumStmt" | "ReindexStmt":  # a new file for a catalog every database shares (review r35 F5)
            if shared := _rewrites_shared(node, f):
                return (f"would rewrite {shared}, a catalog shared by every database (its new file serves the whole "
                        "server; logins wait for its lock meanwhile)")
        case "RenameStmt" | "AlterOwnerStmt":
            kind = _SHARED_OBJECTS.get(f.get("renameType") or f.get("objectType") or "")
            if kind:
                name = f.get("subname") or (f.get("object") or {}).get("String", {}).get("sval", "?")
                change = f"rename it to {f.get('newname')}" if node == "RenameStmt" else \
                    f"give it to {(f.get('newowner') or {}).get('rolename', '?')}"
                return f"would {change} ({kind} {name})"
        case "GrantStmt" | "CommentStmt" | "SecLabelStmt":
            kind = _SHARED_OBJECTS.get(f.get("objtype", ""))
            if kind:
                what = {"GrantStmt": "grant or revoke privileges on", "CommentStmt": "comment on",
                        "SecLabelStmt": "label"}[node]
                return f"would {what} a {kind} (a catalog shared by every database)"
    return None


def escape_refusal(db: Database, catalog: TrialCatalog, stmt: Statement) -> tuple[str | None, bool]:
    """Why ``stmt`` must not run in a dry run, or None; and whether it is only untestable (not a failure): the
    choke point's ``TRIAL`` check (:func:`agent19.safety.gate.admit_parsed`, :mod:`agent19.safety.trial`)."""
    from agent19.safety.gate import Purpose, admit_parsed
    from agent19.safety.readonly import ReadOnlyViolation

    try:
        admit_parsed(db, [stmt], Purpose.TRIAL, catalog=catalog)
    except Untestable as exc:
        return str(exc), True
    except ReadOnlyViolation as exc:
        return re.sub(r"^refused(?: in [a-z-]+)?: ", "", str(exc)), False
    return None, False


def _only_sequences(stmt: Statement) -> bool:
    """The statement's only calls that escape a rollback are nextval/setval."""
    escaping = named_functions(stmt.tree) & ESCAPING
    return bool(escaping) and escaping <= SEQUENCE_FUNCTIONS and not any(
        node == "CopyStmt" for node, _ in walk(stmt.tree))


def shared_writes(conn: psycopg.Connection[Any], rows: list[Any] | None = None) -> list[str]:
    """Shared catalogs this session's transaction holds a write lock on (it changed the cluster); ``rows``: those
    of :data:`Q_SHARED_WRITES`, read already (with the statement's observation: :func:`agent19.db.observe.observe`)."""
    if rows is None:  # right after user SQL: under pg_catalog, pg_temp (agent19.db.catalog_first.read_own)
        rows = catalog_first.read_own(conn, (Q_SHARED_WRITES,))[0].fetchall()
    return [r["relname"] if isinstance(r, dict) else r[0] for r in rows]


def guarded(statement: str) -> str:
    """``statement`` in a transaction of its own that aborts instead of committing when it wrote a shared
    catalog — for a session agent19 cannot check between the statement and its commit (the watched worker
    of a blocking measurement). The statement ends on its own line: a trailing comment cannot swallow the
    rest. Simple-query protocol (no parameters)."""
    guard = (f"DO $agent19_guard$ BEGIN IF EXISTS ({Q_WROTE_SHARED}) THEN RAISE EXCEPTION "
             "'agent19: the statement wrote a cluster-wide catalog; rolled back in the scratch database'; "
             "END IF; END $agent19_guard$")
    return f"BEGIN;\n{statement}\n;\n{guard};\nCOMMIT"


Q_SESSION_READS = f"""SELECT pg_catalog.current_setting('standard_conforming_strings') AS strings,
       {catalog_first.USER_PATH} AS path,
       (SELECT pg_catalog.string_agg(c.relname::pg_catalog.text, ', ') FROM pg_catalog.pg_class c
         WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
           AND c.relname::pg_catalog.text OPERATOR(pg_catalog.~~) 'pg\\_%') AS temp_catalog_names"""
"""How this session reads SQL and names now, read after every statement (with its locks, every name qualified):
how the server reads string literals, the search_path (the statement's, saved by
:func:`agent19.db.observe.own_reads`, which this runs in), and temporary relations named like catalog ones (searched
before pg_catalog: they would answer agent19's own reads of pg_locks, pg_class...)."""


class SessionChanged(Exception):
    """Raised inside a savepoint to roll back a statement after which this session reads SQL or names otherwise
    than agent19 does: ``standard_conforming_strings`` no longer on (through a view or rule over pg_settings, a
    function, anything the statement's text does not show: every later statement would be read by the server as
    agent19 did not read it, ``'a\\', '`` is one string to one, two to the other), or a temporary relation that
    makes agent19's own catalog reads resolve elsewhere (:mod:`agent19.db.catalog_first`). A search_path that
    lists pg_catalog after another schema is not refused: it is pinned (:func:`pin_path`)."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(value)

    @property
    def note(self) -> str:
        return f"refused: {self.value} (seen by the server after it ran, not in its text); rolled back"


def _session_row(rows: list[Any]) -> dict[str, Any]:
    """The one row of :data:`Q_SESSION_READS`, by column name."""
    return rows[0] if isinstance(rows[0], dict) else dict(zip(("strings", "path", "temp_catalog_names"), rows[0],
                                                              strict=True))


def session_changed(rows: list[Any]) -> str | None:
    """None when the rows of :data:`Q_SESSION_READS` say this session reads SQL and names as agent19 does, else
    what changed."""
    row = _session_row(rows)
    if row["strings"] != "on":
        return (f"it set standard_conforming_strings to {row['strings']}: the server would read every later "
                "statement's string literals otherwise than agent19 read them")
    if row["temp_catalog_names"]:
        return (f"it made temporary relations named like catalog ones ({row['temp_catalog_names']}), which the "
                "server searches before pg_catalog: agent19's own reads of the catalog would resolve to them")
    return None


def pin_path(conn: psycopg.Connection[Any], rows: list[Any]) -> str | None:
    """When the statement left the session's search_path listing pg_catalog after another schema (the rows of
    :data:`Q_SESSION_READS`): a ``RESET search_path`` or ``SET … TO DEFAULT`` back to a database's or role's
    ``app, pg_catalog``, or a ``SET search_path = public, pg_catalog`` as old pg_dump output has — set it as every
    agent19 session sets such a path (:func:`agent19.db.catalog_first.pin`: the same schemas, pg_catalog searched
    first) and return the note that says so; else None. The migration's later statements then find what the path
    finds (``current_schema()``, where an unqualified CREATE lands, the tables it names), save a name defined both
    in such a schema and in pg_catalog: agent19's sessions use the built-in, as they do from the start."""
    row = _session_row(rows)
    path = row["path"] or ""
    if (schema := catalog_first.shadowing(path)) is None:
        return None
    catalog_first.pin(conn, path)
    return (f"its search_path ({path}) lists pg_catalog after {schema}: set to {catalog_first.unshadowed(path)} "
            "for the statements after it (pg_catalog searched first, as in every agent19 session; a name defined both "
            f"in {schema} and in pg_catalog is the built-in here, {schema}'s under psql)")


class ClusterWrite(Exception):
    """Raised inside a savepoint to roll back a statement that wrote a shared catalog."""

    def __init__(self, catalogs: list[str]) -> None:
        self.catalogs = catalogs
        super().__init__(", ".join(catalogs))

    @property
    def note(self) -> str:
        return (f"{NOTE_PREFIX}: it wrote {', '.join(self.catalogs)} (seen by the server, not in the statement's "
                "text) and was rolled back")


class Blocked(BaseModel):
    """A statement a dry run does not run: cluster-wide, escaping (``refused``: the dry run fails), or
    ``untested`` — not a failure, but not tried either: it moves a sequence (``setval``/``nextval`` called by
    the statement itself, ``setval`` anywhere in the code it reaches: a rollback leaves sequences where they
    went), or it reaches code the guard cannot read (SQL built at run time, another language;
    :mod:`agent19.safety.trial`)."""

    note: str
    refused: bool
    untested: bool = False


class Screened(NamedTuple):
    blocked: dict[int, Blocked]  # by Statement.index
    allowed: dict[int, str]  # by Statement.index: the note of each that runs unreadable code by the opt-in
    code: str | None  # the fingerprint of the code the server may run, read with the catalog (None: not read)


def screen(db: Database, conn: psycopg.Connection[Any], statements: list[Statement]) -> Screened:
    """Decide, before anything runs, which statements a dry run must not run (by ``Statement.index``); and, by
    the same index, the note of each that will run code agent19 cannot read because the operator opted in
    (``--allow-unreadable-code``); and the fingerprint of the code the server may run, read in the same
    snapshot as the catalog the decision is made on (:mod:`agent19.safety.fingerprint`: compared after the
    rollback).

    ``conn`` reads the target's catalog (autocommit, outside the dry run's transaction).
    """
    blocked: dict[int, Blocked] = {}
    catalog = TrialCatalog(conn, statements, skip=cluster_effect)
    for stmt in statements:
        if stmt.node == "TransactionStmt":
            continue
        if effect := cluster_effect(stmt):
            blocked[stmt.index] = Blocked(note=f"{NOTE_PREFIX}: {effect}", refused=False)
            continue
        why, untestable = escape_refusal(db, catalog, stmt)
        catalog.judged(stmt)  # (also when the text check refused it before the catalog was asked)
        if why is None:
            continue
        if untestable:
            blocked[stmt.index] = Blocked(note=f"not run: {why}", refused=False, untested=True)
        elif _only_sequences(stmt) and catalog.reach(stmt)[0] is None:  # its own setval/nextval, nothing worse
            blocked[stmt.index] = Blocked(note=f"not run: {why} (sequences are not transactional)",
                                          refused=False, untested=True)
        else:
            blocked[stmt.index] = Blocked(note=f"refused in a dry run: {why}", refused=True)
    return Screened(blocked, catalog.allowed, catalog.code)
