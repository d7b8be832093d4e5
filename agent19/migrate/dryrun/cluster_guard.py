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
* **At run time** (:func:`shared_writes`): whatever a statement hides (a ``DO`` block, a function,
  a trigger) it cannot write a shared catalog without the server showing a lock on it. A statement
  that did is rolled back to its savepoint (in the target) or its transaction (in a scratch
  database) and reported as not run.
* **Checked afterwards** (:func:`fingerprint`, :func:`diff_cluster`): roles and their attributes
  (password hashes compared as digests), memberships, role and database settings, databases,
  tablespaces, replication slots, subscriptions, parameter privileges, shared comments, and the
  settings ``ALTER SYSTEM`` wrote. Any difference makes ``target_unchanged`` false.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import psycopg
from pydantic import BaseModel

from agent19.db.connection import Database
from agent19.migrate.parse import Statement
from agent19.safety.function_facts import ESCAPING, SEQUENCE_FUNCTIONS
from agent19.sqltree import qualified_name, walk

NOTE_PREFIX = "acts on the whole server, not one database: never run by a dry run"

# catalogs shared by every database of the cluster that a statement writes only to change the cluster
# (pg_shdepend is left out: every object a non-bootstrap role owns adds a row there, per database)
SHARED_CATALOGS = ("pg_authid", "pg_auth_members", "pg_database", "pg_db_role_setting", "pg_tablespace",
                   "pg_subscription", "pg_shdescription", "pg_shseclabel", "pg_replication_origin",
                   "pg_parameter_acl")
_WRITE_MODES = ("RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock",
                "AccessExclusiveLock")
_SHARED_OBJECTS = {"OBJECT_DATABASE": "database", "OBJECT_ROLE": "role", "OBJECT_TABLESPACE": "tablespace",
                   "OBJECT_SUBSCRIPTION": "subscription", "OBJECT_PARAMETER_ACL": "parameter"}
# the write locks this session holds on shared catalogs (constants only: usable without parameters)
_HELD_SHARED_WRITES = (
    "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE l.pid = pg_backend_pid() "
    "AND l.locktype = 'relation' AND l.database = 0 "
    f"AND l.mode IN ({', '.join(repr(m) for m in _WRITE_MODES)}) "
    f"AND c.relname IN ({', '.join(repr(c) for c in SHARED_CATALOGS)})")
Q_SHARED_WRITES = f"SELECT DISTINCT c.relname::text {_HELD_SHARED_WRITES} ORDER BY 1"
_CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_$]*)\s*\(")  # names called in a function body or DO block
_REMOTE = re.compile(r"\b(dblink\w*|postgres_fdw\w*)\b", re.IGNORECASE)
_COPY_OUTSIDE = re.compile(r"\bCOPY\b[^;]*?\b(?:TO|FROM)\s+(?:PROGRAM\b|')", re.IGNORECASE | re.DOTALL)


@cache  # the lists are constants: built once, not once per statement screened
def _escaping_pattern() -> re.Pattern[str]:
    """Names in a function body that escape a rollback (the choke point's list; sequences excepted:
    triggers and defaults call nextval all the time, and a sequence's position is not cluster state)."""
    names = sorted(ESCAPING - SEQUENCE_FUNCTIONS, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\s*(?:/\*.*?\*/\s*)*\(", re.IGNORECASE | re.DOTALL)


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
            return (f"would give what {_roles(f.get('roles'))} own(s) — this database's objects, and databases and "
                    f"tablespaces — to {(f.get('newrole') or {}).get('rolename', '?')}")
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


def _named_functions(tree: Any) -> set[str]:
    return {qualified_name(f.get("funcname", [])).rsplit(".", 1)[-1].lower()
            for node, f in walk(tree) if node == "FuncCall"}


def _named_relations(tree: Any) -> set[str]:
    """Every relation name in the tree: ``RangeVar`` nodes, and the bare ones in fields typed as a relation
    (``InsertStmt.relation``, ``UpdateStmt.relation``… carry no ``RangeVar`` wrapper in the JSON tree)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("relname"), str):
                found.add(item["relname"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


Q_FUNCTIONS = """
SELECT p.proname, coalesce(p.prosrc, '') || ' ' || coalesce(p.probin, '') AS body
  FROM pg_proc p WHERE p.proname = ANY(%s)
"""
# for each relation named: foreign table?; the functions its view rules, triggers and defaults call
Q_RELATIONS = """
SELECT c.relname, c.relkind::text AS relkind,
       ARRAY(SELECT DISTINCT p.proname::text FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
                 AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass JOIN pg_proc p ON p.oid = d.refobjid
              WHERE r.ev_class = c.oid
             UNION SELECT p.proname::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = c.oid
             UNION SELECT p.proname::text FROM pg_attrdef a JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass
                 AND d.objid = a.oid AND d.refclassid = 'pg_proc'::regclass JOIN pg_proc p ON p.oid = d.refobjid
              WHERE a.adrelid = c.oid) AS calls,
       ARRAY(SELECT DISTINCT v.relname::text FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
                 AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass JOIN pg_class v ON v.oid = d.refobjid
              WHERE r.ev_class = c.oid AND v.oid <> c.oid) AS reads
  FROM pg_class c WHERE c.relname = ANY(%s)
"""


# both, for the names the statements use themselves, in one statement (one round trip): rows as JSON objects
Q_NAMED = (f"SELECT (SELECT coalesce(json_agg(f), '[]') FROM ({Q_FUNCTIONS.replace('%s', '%(f)s')}) f) AS f, "
           f"(SELECT coalesce(json_agg(r), '[]') FROM ({Q_RELATIONS.replace('%s', '%(r)s')}) r) AS r")


class _Catalog:
    """The target catalog's answers to Q_FUNCTIONS and Q_RELATIONS, each name read once per :func:`screen`
    (nothing has run yet, so they cannot change between its statements). The names ``statements`` use
    themselves are read first, all in one round trip (:data:`Q_NAMED`); only names found on the way (function
    bodies, views, triggers) are read later."""

    def __init__(self, conn: psycopg.Connection[Any], statements: list[Statement] | None = None) -> None:
        self.conn = conn
        self._functions: dict[str, list[tuple[Any, ...]]] = {}
        self._relations: dict[str, list[tuple[Any, ...]]] = {}
        funcs: set[str] = set()
        rels: set[str] = set()
        for stmt in statements or []:
            if stmt.node != "TransactionStmt" and not cluster_effect(stmt):
                funcs |= _named_functions(stmt.tree) | (
                    {w.lower() for w in _CALLED.findall(stmt.sql)} if stmt.node == "DoStmt" else set())
                rels |= _named_relations(stmt.tree)
        if funcs or rels:
            row = conn.execute(Q_NAMED, {"f": sorted(funcs), "r": sorted(rels)}).fetchone()
            found, named = _row(row, "f", "r"), (sorted(funcs), sorted(rels))
            self._store(self._functions, named[0], found[0], ("proname", "body"))
            self._store(self._relations, named[1], found[1], ("relname", "relkind", "calls", "reads"))

    def functions(self, names: set[str]) -> list[tuple[Any, ...]]:
        """``(proname, body)`` of every function named ``names``."""
        return self._read(self._functions, Q_FUNCTIONS, names, ("proname", "body"))

    def relations(self, names: set[str]) -> list[tuple[Any, ...]]:
        """``(relname, relkind, calls, reads)`` of every relation named ``names``."""
        return self._read(self._relations, Q_RELATIONS, names, ("relname", "relkind", "calls", "reads"))

    def _read(self, cache: dict[str, list[tuple[Any, ...]]], query: str, names: set[str],
              keys: tuple[str, ...]) -> list[tuple[Any, ...]]:
        if missing := sorted(names - cache.keys()):
            self._store(cache, missing, self.conn.execute(query, (missing,)).fetchall(), keys)
        return [row for name in sorted(names) for row in cache[name]]

    @staticmethod
    def _store(cache: dict[str, list[tuple[Any, ...]]], names: list[str], rows: list[Any],
               keys: tuple[str, ...]) -> None:
        for name in names:
            cache[name] = []
        for r in rows:
            row = _row(r, *keys)
            cache[row[0]].append(row)


def _remote_use(catalog: _Catalog, stmt: Statement, created: dict[str, str]) -> str | None:
    """Why ``stmt`` may reach another server through dblink / postgres_fdw, or call a function that
    escapes the rollback from inside a function it reaches, or None.

    Follows, on the target's catalog, the functions the statement names (their bodies, and the
    functions named in those bodies), the relations it names (foreign tables; views' rules, triggers
    and column defaults, and the relations views read), and functions created earlier in the same
    migration (``created``: name → body). Bounded: 50 rounds.
    """
    if stmt.node == "ImportForeignSchemaStmt":
        return "IMPORT FOREIGN SCHEMA connects to another server"
    funcs, rels = _named_functions(stmt.tree), _named_relations(stmt.tree)
    escaping = _escaping_pattern()
    if stmt.node == "DoStmt":  # the body is a string to the parser: read it as a function body
        if m := _REMOTE.search(stmt.sql) or escaping.search(stmt.sql):
            return f"the DO block calls {m[1]}, which a rollback cannot undo"
        if _COPY_OUTSIDE.search(stmt.sql):
            return "the DO block runs COPY to or from a program or a server file, which a rollback cannot undo"
        funcs |= {w.lower() for w in _CALLED.findall(stmt.sql)}
    seen_f: set[str] = set()
    seen_r: set[str] = set()
    for _ in range(50):
        new_f, new_r = funcs - seen_f, rels - seen_r
        if not new_f and not new_r:
            return None
        seen_f |= new_f
        seen_r |= new_r
        for name in new_f:
            if _REMOTE.fullmatch(name):
                return f"it calls {name}(), which reaches another server"
            if name in created and (m := _REMOTE.search(created[name]) or escaping.search(created[name])
                                    or _COPY_OUTSIDE.search(created[name])):
                what = m[1] if m.lastindex else "COPY to or from a program or a server file"
                return f"function {name}, created earlier in this migration, uses {what}, which a rollback cannot undo"
        for proname, body in catalog.functions(new_f):
            if m := _REMOTE.search(body):
                return f"function {proname} uses {m[1]}, which reaches another server"
            if m := escaping.search(body):
                return f"function {proname} calls {m[1]}(), which acts outside the transaction"
            if _COPY_OUTSIDE.search(body):
                return f"function {proname} runs COPY to or from a program or a server file"
            funcs |= {w.lower() for w in _CALLED.findall(body)}
        for relname, relkind, calls, reads in catalog.relations(new_r):
            if relkind == "f":
                return f"{relname} is a foreign table: reading or writing it reaches another server"
            funcs |= {c.lower() for c in calls or []}
            rels |= set(reads or [])
    return "its functions and views nest too deeply to follow"


def _row(row: Any, *keys: str) -> tuple[Any, ...]:
    return tuple(row[k] for k in keys) if isinstance(row, dict) else tuple(row)


def escape_refusal(db: Database, catalog: _Catalog, stmt: Statement, created: dict[str, str]) -> str | None:
    """Why ``stmt`` must not run in a dry run (its effect would escape the rollback), or None."""
    from agent19.safety.gate import Purpose, admit_parsed
    from agent19.safety.readonly import ReadOnlyViolation

    try:
        admit_parsed(db, [stmt], Purpose.TRIAL)
    except ReadOnlyViolation as exc:
        return re.sub(r"^refused in [a-z-]+: ", "", str(exc))
    return _remote_use(catalog, stmt, created)


def _only_sequences(stmt: Statement) -> bool:
    """The statement's only calls that escape a rollback are nextval/setval."""
    escaping = _named_functions(stmt.tree) & ESCAPING
    return bool(escaping) and escaping <= SEQUENCE_FUNCTIONS and not any(
        node == "CopyStmt" for node, _ in walk(stmt.tree))


def created_functions(stmt: Statement) -> dict[str, str]:
    """``{name: body}`` for a ``CREATE FUNCTION/PROCEDURE`` (followed by later statements' checks)."""
    if stmt.node != "CreateFunctionStmt":
        return {}
    name = qualified_name(stmt.fields.get("funcname", [])).rsplit(".", 1)[-1].lower()
    return {name: stmt.sql}


def shared_writes(conn: psycopg.Connection[Any], rows: list[Any] | None = None) -> list[str]:
    """Shared catalogs this session's transaction holds a write lock on (it changed the cluster); ``rows``: those
    of :data:`Q_SHARED_WRITES`, read already (with the statement's observation: :func:`agent19.db.observe.observe`)."""
    if rows is None:
        rows = conn.execute(Q_SHARED_WRITES).fetchall()
    return [_row(r, "relname")[0] for r in rows]


def guarded(statement: str) -> str:
    """``statement`` in a transaction of its own that aborts instead of committing when it wrote a shared
    catalog — for a session agent19 cannot check between the statement and its commit (the watched worker
    of a blocking measurement). The statement ends on its own line: a trailing comment cannot swallow the
    rest. Simple-query protocol (no parameters)."""
    guard = (f"DO $agent19_guard$ BEGIN IF EXISTS (SELECT 1 {_HELD_SHARED_WRITES}) THEN RAISE EXCEPTION "
             "'agent19: the statement wrote a cluster-wide catalog; rolled back in the scratch database'; "
             "END IF; END $agent19_guard$")
    return f"BEGIN;\n{statement}\n;\n{guard};\nCOMMIT"


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
    """A statement a dry run does not run: cluster-wide, escaping (``refused``: the dry run fails), or moving
    a sequence (``untested``: ``setval``/``nextval`` called by the statement itself — not a failure, but not
    tried either, since a rollback leaves sequences where they went)."""

    note: str
    refused: bool
    untested: bool = False


def screen(db: Database, conn: psycopg.Connection[Any], statements: list[Statement]) -> dict[int, Blocked]:
    """Decide, before anything runs, which statements a dry run must not run (by ``Statement.index``).

    ``conn`` reads the target's catalog (autocommit, outside the dry run's transaction).
    """
    blocked: dict[int, Blocked] = {}
    created: dict[str, str] = {}
    catalog = _Catalog(conn, statements)
    for stmt in statements:
        if stmt.node == "TransactionStmt":
            continue
        if effect := cluster_effect(stmt):
            blocked[stmt.index] = Blocked(note=f"{NOTE_PREFIX}: {effect}", refused=False)
        elif refusal := escape_refusal(db, catalog, stmt, created):
            if _only_sequences(stmt) and _remote_use(catalog, stmt, created) is None:
                blocked[stmt.index] = Blocked(note=f"not run: {refusal} (sequences are not transactional)",
                                              refused=False, untested=True)
            else:
                blocked[stmt.index] = Blocked(note=f"refused in a dry run: {refusal}", refused=True)
        created |= created_functions(stmt)
    return blocked
