"""The read-only guard: user SQL that reads, and nothing else, whatever the text tries.

Four layers, each enough for most escapes, together for all the known ones:

1. **One statement.** The text is parsed with PostgreSQL's own grammar (pglast): ``SELECT 1;
   DROP TABLE x``, ``COMMIT; DROP …`` and ``SELECT '--'; DROP …`` are two statements and refused;
   comments and strings cannot hide a statement from the parser. It is then sent with the
   extended protocol, which the server itself refuses to run more than one statement through.
2. **A parse-tree allowlist.** ``SELECT`` (without ``INTO`` or ``FOR UPDATE/SHARE``), ``VALUES``,
   ``TABLE``, ``SHOW`` and ``EXPLAIN`` (of a write only without ``ANALYZE``); no data-modifying
   CTE; no relation that holds credentials (``pg_authid``, ``pg_shadow``, user mappings) or server
   files; no deny-listed function (server files, large objects, signals to other sessions,
   settings, advisory locks, dblink, SQL-in-a-string such as ``query_to_xml``).
3. **The catalog.** Every function and operator called is looked up in ``pg_proc``: a volatile one
   (a user function that deletes rows, say) is refused unless it is a known harmless built-in
   (``random``, ``clock_timestamp``, ``pg_sleep``…); views, policies and the code planning a read of a relation
   runs (index, statistics, partition-key and CHECK expressions) are followed to what they call.
4. **The server.** The statement runs in a ``READ ONLY`` transaction that is rolled back, under the
   session's ``statement_timeout`` (which the guard gives no way to change).
"""

from __future__ import annotations

from typing import Any

from agent19.errors import Agent19Error
from agent19.migrate.parse import Statement
from agent19.safety.facts import range_var_name
from agent19.safety.function_facts import ESCAPING, LEAVES_COPY, denied_in_reads
from agent19.safety.readonly_catalog import Resolver
from agent19.sqltree import qualified_name, walk

ALLOWED = {"SelectStmt", "ExplainStmt", "VariableShowStmt"}
EXPLAINABLE_WRITES = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}
WRITE_NODES = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "LockingClause"}
DENIED_RELATIONS = {
    "pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "pg_statistic", "pg_largeobject",
    "pg_file_settings", "pg_hba_file_rules", "pg_ident_file_mappings", "pg_auth_members",
    # credentials of foreign servers and subscriptions, also through information_schema
    "user_mapping_options", "user_mappings", "_pg_user_mappings", "pg_subscription",
}
DENIED_COLUMNS = {"rolpassword", "passwd", "umoptions", "subconninfo"}
HARMLESS_VOLATILE = {
    "random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v4",
    "pg_sleep", "pg_sleep_for", "pg_sleep_until",
    # statistics functions behind views people read (pg_stat_statements, pg_locks, pg_buffercache…)
    "pg_stat_statements", "pg_stat_statements_info", "pg_lock_status", "pg_buffercache_pages", "hypopg",
    "hypopg_relation_size", "hypopg_get_indexdef", "pg_stat_get_wal_receiver", "pg_stat_get_subscription",
}



class ReadOnlyViolation(Agent19Error):
    """The statement is not a pure read; nothing was run."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, what: str | None = None) -> None:
        super().__init__(message, hint)
        self.what = what or message
        """What was refused, without the mode (:meth:`in_mode`)."""

    def in_mode(self, mode: str) -> ReadOnlyViolation:
        """The refusal as said in ``mode`` (dry-run, execute), where a read goes through the same guard."""
        return ReadOnlyViolation(f"refused in {mode} mode (a read goes through the read-only guard in every mode): "
                                 f"{self.what}", self.hint, self.what)


def _refuse(what: str, hint: str = "read-only mode runs one reading statement (SELECT, VALUES, TABLE, SHOW, "
            "EXPLAIN) per call") -> ReadOnlyViolation:
    return ReadOnlyViolation(f"refused in read-only: {what}", hint, what)


def check_statements(statements: list[Statement]) -> Statement:
    """Layers 1 and 2: exactly one allowed statement; returns it, else :class:`ReadOnlyViolation`."""
    if len(statements) != 1:
        raise _refuse(f"{len(statements)} statements given; one statement per call",
                      "send each statement in its own call")
    st = statements[0]
    if st.node not in ALLOWED:
        raise _refuse(f"{st.node.removesuffix('Stmt') or 'this statement'} is not a read")
    tree: Any = st.tree
    if st.node == "ExplainStmt":
        inner = st.fields.get("query", {})
        inner_node = next(iter(inner), "")
        # any ANALYZE option counts, even ANALYZE false: the cautious reading
        analyze = any(o.get("DefElem", {}).get("defname") == "analyze" for o in st.fields.get("options") or [])
        if inner_node in EXPLAINABLE_WRITES and not analyze:
            tree = {}  # EXPLAIN without ANALYZE plans a write but does not run it
        elif inner_node != "SelectStmt":
            raise _refuse(f"EXPLAIN {'ANALYZE ' if analyze else ''}of {inner_node.removesuffix('Stmt')} runs a write")
        else:
            tree = inner
    check_tree(tree)
    return st


def is_read(st: Statement) -> bool:
    """A statement that only reads (no write anywhere in it, no row locks)."""
    return st.node in ALLOWED and not any(n in WRITE_NODES for n, _ in walk(st.tree))


def check_plannable(statements: list[Statement]) -> Statement:
    """One statement that is only planned, never run: a read passes :func:`check_statements`; an
    INSERT/UPDATE/DELETE/MERGE is accepted, but nothing in it may call a denied function or read a
    denied relation (planning evaluates immutable calls)."""
    if len(statements) != 1:
        raise _refuse(f"{len(statements)} statements given; one statement per call",
                      "send each statement in its own call")
    st = statements[0]
    if st.node in EXPLAINABLE_WRITES or (st.node == "SelectStmt" and any(n in WRITE_NODES for n, _ in walk(st.tree))):
        check_calls(st.tree)
        return st
    return check_statements(statements)


def _stored_not_evaluated(tree: Any) -> Any:
    """``tree`` without the expressions a statement only stores: column defaults of CREATE TABLE and
    ALTER COLUMN … SET DEFAULT (pg_dump writes ``DEFAULT nextval(…)`` both ways). ADD COLUMN … DEFAULT
    is kept: it is evaluated for every existing row."""
    if isinstance(tree, list):
        return [_stored_not_evaluated(x) for x in tree]
    if not isinstance(tree, dict):
        return tree
    if tree.get("contype") == "CONSTR_DEFAULT" or tree.get("subtype") == "AT_ColumnDefault":
        return {k: v for k, v in tree.items() if k not in ("raw_expr", "def")}
    if "AlterTableCmd" in tree and tree["AlterTableCmd"].get("subtype") == "AT_AddColumn":
        return tree  # ADD COLUMN … DEFAULT runs its default for every row
    return {k: _stored_not_evaluated(v) for k, v in tree.items()}


def check_escapes(statement: Statement, contained: bool = False) -> None:
    """Refuse what a rolled-back transaction cannot undo (dry-run mode): calls in
    :data:`agent19.safety.function_facts.ESCAPING` and ``COPY`` to or from a program or a server file. A column default
    that is only stored (CREATE TABLE, SET DEFAULT) is not a call. ``contained``: the trial runs in an isolated copy,
    where only what leaves it escapes (:data:`agent19.safety.function_facts.LEAVES_COPY`)."""
    for node, f in walk(_stored_not_evaluated(statement.tree)):
        if node == "FuncCall":
            name = _function_name(f)
            if name in ESCAPING and not (contained and name not in LEAVES_COPY):
                raise _refuse(f"{name}() acts outside the transaction: rolling back would not undo it",
                              "a dry run must leave nothing behind; run it yourself if it is intended")
        elif node == "CopyStmt" and (f.get("is_program") or f.get("filename")):
            raise _refuse("COPY to or from a program or a server file acts outside the transaction",
                          "use COPY ... FROM STDIN / TO STDOUT (psql's \\copy)")


STRING_READING = "standard_conforming_strings"


def _names_string_reading(name: Any) -> bool:
    """A setting name as the server looks it up: case-insensitive (a quoted ``"Standard_…"`` is the same setting)."""
    return isinstance(name, str) and name.strip().lower() == STRING_READING


def check_string_reading(statement: Statement) -> None:
    """Refuse, in every mode, a statement that changes how the server reads string literals
    (``standard_conforming_strings``): SET / SET LOCAL / RESET of it, ``RESET ALL`` and ``DISCARD ALL`` (they return
    it to a role's or database's default, which may be off), ALTER ROLE/DATABASE/SYSTEM/FUNCTION … SET of it,
    ``set_config`` naming it or with a name built at run time, and code in a string (a DO or function body, SQL run
    from a string) that mentions it. agent19 reads SQL with it on (every session it opens sets it), and with it off
    ``'a\\', '`` ends a string where agent19 saw none end - code it took for text would run. Reading it (SHOW,
    ``current_setting``, ``pg_settings``) is allowed. A statement without a tree is judged by its text."""
    tree = statement.tree
    if not tree:
        if STRING_READING in statement.sql.lower():
            raise _refuse_string_reading("the statement (its parse tree could not be built) may change")
        return
    for node, f in walk(tree):
        setting = f if node == "VariableSetStmt" else f.get("setstmt")
        if isinstance(setting, dict) and _names_string_reading(setting.get("name")):
            raise _refuse_string_reading("the statement changes")
        if node == "UpdateStmt" and (f.get("relation") or {}).get("relname") == "pg_settings":
            raise _refuse("UPDATE pg_settings changes settings (its rule calls set_config with each row's name): "
                          f"agent19 cannot tell whether it changes {STRING_READING}",
                          "use SET with the setting's name; nothing was run")
        if (node == "VariableSetStmt" and f.get("kind") == "VAR_RESET_ALL") or (
                node == "DiscardStmt" and f.get("target") == "DISCARD_ALL"):
            raise _refuse_string_reading(f"{'RESET' if node == 'VariableSetStmt' else 'DISCARD'} ALL returns "
                                         "to the login's default, which may be off,")
        if node == "FuncCall" and _function_name(f) == "set_config":
            first = (f.get("args") or [{}])[0].get("A_Const", {}).get("sval")
            if not isinstance(first, dict):
                raise _refuse("set_config() with a setting name built at run time: agent19 cannot tell which "
                              "setting it changes", "name the setting as a literal; nothing was run")
            if _names_string_reading(first.get("sval")):
                raise _refuse_string_reading("the statement changes")
        if any(STRING_READING in t.lower() and not _names_string_reading(t) for t in _code_or_literal(node, f)):
            raise _refuse("code in a string (a DO or function body, SQL run from a string) mentions "
                          f"{STRING_READING}: agent19 cannot tell whether it changes how string literals are read",
                          "leave the setting alone in the code; read it with SHOW or current_setting(); "
                          "nothing was run")


def _code_or_literal(node: str, f: dict[str, Any]) -> list[str]:
    """The text of a string literal, or of a DO block's or function's body (``AS '…'``); identifiers are not read."""
    if node == "A_Const":
        text = (f.get("sval") or {}).get("sval")
        return [text] if isinstance(text, str) else []
    if node == "DefElem" and f.get("defname") == "as":
        return [fields.get("sval", "") for kind, fields in walk(f.get("arg")) if kind == "String"]
    return []


def _refuse_string_reading(what: str) -> ReadOnlyViolation:
    return _refuse(f"{what} {STRING_READING} (how string literals are read): agent19 reads SQL with it on",
                   "leave it on (read it with SHOW or current_setting()); nothing was run")


def _function_name(f: dict[str, Any]) -> str:
    return qualified_name(f.get("funcname", [])).rsplit(".", 1)[-1].lower()


def _check_call(node: str, f: dict[str, Any]) -> None:
    """One node of a walk: a deny-listed relation read or function called."""
    if node == "RangeVar" and f.get("relname") in DENIED_RELATIONS:  # a write's target too (sqltree.walk)
        raise _refuse(f"{range_var_name(f)} holds credentials or server internals",
                      "read pg_roles for roles; password hashes are never returned")
    if node == "FuncCall" and denied_in_reads(name := _function_name(f)):
        raise _refuse(f"{name}() is not allowed in read-only mode (server files, other sessions, settings, "
                      "locks, SQL run from strings)")


def check_calls(tree: Any) -> None:
    """Deny-listed functions and relations anywhere in ``tree`` (no statement-kind or column checks)."""
    for node, f in walk(tree):
        _check_call(node, f)


def check_tree(tree: Any) -> None:
    for node, f in walk(tree):
        if node in WRITE_NODES:
            raise _refuse("SELECT ... FOR UPDATE/SHARE locks rows" if node == "LockingClause"
                          else f"a data-modifying {node.removesuffix('Stmt').upper()} inside the query")
        if node == "SelectStmt" and f.get("intoClause"):
            raise _refuse("SELECT ... INTO creates a table")
        if node == "ColumnRef":
            names = {p.get("String", {}).get("sval") for p in f.get("fields", [])}
            if names & DENIED_COLUMNS:
                raise _refuse(f"column {', '.join(sorted(n for n in names & DENIED_COLUMNS if n))} holds credentials")
        _check_call(node, f)


def _resolver(conn: Any) -> Resolver:
    return Resolver(conn, _refuse, denied_function=denied_in_reads, denied_relations=DENIED_RELATIONS,
                    denied_columns=DENIED_COLUMNS, harmless_volatile=HARMLESS_VOLATILE)


def check_catalog(conn: Any, statement: Statement, *, planning_only: bool = False) -> None:
    """Layer 3: what the statement calls and reads as the server resolves it, followed through views,
    operators, casts and function bodies (:mod:`agent19.safety.readonly_catalog`). ``planning_only``:
    the statement is planned, never executed, so its own volatile calls do not run."""
    _resolver(conn).check_statement(statement.tree, planning_only=planning_only)


Q_RELATION_OIDS = """SELECT pg_catalog.to_regclass(n)::pg_catalog.oid::pg_catalog.int8 AS oid
  FROM pg_catalog.unnest(%s::pg_catalog.text[]) n"""


def relation_oids(conn: Any, names: list[str]) -> list[int]:
    """The relations ``names`` (quoted as SQL) are, in one query; a name that is none is left out."""
    if not names:
        return []
    from psycopg.rows import tuple_row  # whatever rows the connection makes

    rows = conn.cursor(row_factory=tuple_row).execute(Q_RELATION_OIDS, (names,)).fetchall()
    return [int(r[0]) for r in rows if r[0] is not None]


def check_relations_read(conn: Any, relation_oids: list[int], *, rows_written: bool = False) -> None:
    """Layer 3 for relations agent19 reads with its own SQL (a quality check's scan, a calibration's sample): the
    code planning and reading them runs — index expressions and predicates, statistics objects' expressions,
    partition keys, CHECK constraints, policies, views' queries (:mod:`agent19.safety.readonly_relations`) — judged
    as a read's, else :class:`ReadOnlyViolation` naming where it is. ``conn``: catalog reads only. ``rows_written``:
    rows are also written into a copy built with the relations' indexes and CHECKs, which evaluates every call in
    them (not only those the planner folds)."""
    resolver = _resolver(conn)
    resolver.rows_written = rows_written
    resolver.check_relations({int(o) for o in relation_oids})
