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
   (``random``, ``clock_timestamp``, ``pg_sleep``…).
4. **The server.** The statement runs in a ``READ ONLY`` transaction that is rolled back, under the
   session's ``statement_timeout`` (which the guard gives no way to change).
"""

from __future__ import annotations

from typing import Any

from agent19.errors import Agent19Error
from agent19.migrate.parse import Statement
from agent19.safety.facts import range_var_name
from agent19.safety.readonly_catalog import Resolver
from agent19.sqltree import qualified_name, walk

ALLOWED = {"SelectStmt", "ExplainStmt", "VariableShowStmt"}
EXPLAINABLE_WRITES = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}
WRITE_NODES = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "LockingClause"}
DENIED_FUNCTIONS = {
    # server files
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
    "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir",
    "pg_ls_replslotdir", "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
    "pg_current_logfile",
    # large objects
    "lo_import", "lo_export", "lo_get", "lo_put", "lo_from_bytea", "lo_unlink", "lo_open", "lo_create",
    "lo_creat", "loread", "lowrite", "lo_truncate",
    # other sessions and the server
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal",
    "pg_promote", "pg_create_restore_point", "pg_backup_start", "pg_backup_stop", "pg_start_backup",
    "pg_stop_backup", "pg_log_backend_memory_contexts", "pg_stat_reset", "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters", "pg_stat_reset_slru", "pg_stat_statements_reset",
    # settings
    "set_config",
    # locks that outlive the statement
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_all",
    # other servers and SQL run from a string (not seen by this guard)
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query", "dblink_open",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
    "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml", "database_to_xml",
    "schema_to_xml_and_xmlschema", "database_to_xml_and_xmlschema", "pg_notify",
    # replication
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
    "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes", "pg_logical_emit_message",
    "pg_replication_slot_advance", "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot",
    "pg_replication_origin_create", "pg_replication_origin_drop",
    # SQL given as a string, run by the function (found in pg_proc by argument names and in contrib)
    "ts_stat", "ts_rewrite", "crosstab", "crosstab2", "crosstab3", "crosstab4", "connectby",
    # maintenance that writes, configuration files, recovery
    "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range", "gin_clean_pending_list",
    "pg_show_all_file_settings", "pg_hba_file_rules", "pg_ident_file_mappings", "pg_wal_replay_pause",
    "pg_wal_replay_resume", "pg_import_system_collations", "pg_sync_replication_slots",
}
DENIED_PREFIXES = (
    "dblink", "lo_", "pg_file_", "pg_ls_", "pg_read_", "pg_stat_reset", "pg_advisory", "pg_try_advisory",
    "pg_replication_origin", "pg_create_", "pg_drop_replication", "pg_copy_", "pg_logical_", "postgres_fdw_",
    "pg_wal_replay_", "query_to_", "cursor_to_", "table_to_xml", "schema_to_xml", "database_to_xml", "crosstab",
    "pg_backup_", "pg_terminate", "pg_cancel",
)
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


def denied_function(name: str) -> bool:
    """A function name that read-only mode never calls, whatever schema it is in."""
    name = name.lower()
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)


class ReadOnlyViolation(Agent19Error):
    """The statement is not a pure read; nothing was run."""

    exit_code = 1


def _refuse(what: str, hint: str = "read-only mode runs one reading statement (SELECT, VALUES, TABLE, SHOW, "
            "EXPLAIN) per call") -> ReadOnlyViolation:
    return ReadOnlyViolation(f"refused in read-only: {what}", hint)


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


# Calls whose effect survives a rolled-back transaction: refused in dry-run mode too.
ESCAPING_FUNCTIONS = {
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal",
    "pg_promote", "pg_create_restore_point", "pg_backup_start", "pg_backup_stop", "pg_start_backup",
    "pg_stop_backup", "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
    "pg_stat_reset_slru", "pg_stat_statements_reset", "pg_log_backend_memory_contexts",
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_advisory_unlock", "pg_advisory_unlock_all", "pg_advisory_unlock_shared",
    "lo_export", "lo_import", "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query", "dblink_open",
    "dblink_fetch", "dblink_get_result",
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
    "pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes", "pg_replication_slot_advance",
    "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot", "pg_logical_emit_message",
    "pg_replication_origin_create", "pg_replication_origin_drop", "pg_replication_origin_advance",
    "nextval", "setval",  # a dry run reports a statement calling them as not run (dryrun_cluster.screen)
}


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


def check_escapes(statement: Statement) -> None:
    """Refuse what a rolled-back transaction cannot undo (dry-run mode): calls in
    :data:`ESCAPING_FUNCTIONS` and ``COPY`` to or from a program or a server file. A column default
    that is only stored (CREATE TABLE, SET DEFAULT) is not a call."""
    for node, f in walk(_stored_not_evaluated(statement.tree)):
        if node == "FuncCall":
            name = _function_name(f)
            if name in ESCAPING_FUNCTIONS:
                raise _refuse(f"{name}() acts outside the transaction: rolling back would not undo it",
                              "a dry run must leave nothing behind; run it yourself if it is intended")
        elif node == "CopyStmt" and (f.get("is_program") or f.get("filename")):
            raise _refuse("COPY to or from a program or a server file acts outside the transaction",
                          "use COPY … FROM STDIN / TO STDOUT (psql's \\copy)")


def _function_name(f: dict[str, Any]) -> str:
    return qualified_name(f.get("funcname", [])).rsplit(".", 1)[-1].lower()


def _check_call(node: str, f: dict[str, Any]) -> None:
    """One node of a walk: a deny-listed relation read or function called."""
    if node == "RangeVar" and f.get("relname") in DENIED_RELATIONS:
        raise _refuse(f"{range_var_name(f)} holds credentials or server internals",
                      "read pg_roles for roles; password hashes are never returned")
    if node == "FuncCall" and denied_function(name := _function_name(f)):
        raise _refuse(f"{name}() is not allowed in read-only mode (server files, other sessions, settings, "
                      "locks, SQL run from strings)")


def check_calls(tree: Any) -> None:
    """Deny-listed functions and relations anywhere in ``tree`` (no statement-kind or column checks)."""
    for node, f in walk(tree):
        _check_call(node, f)


def check_tree(tree: Any) -> None:
    for node, f in walk(tree):
        if node in WRITE_NODES:
            raise _refuse("SELECT … FOR UPDATE/SHARE locks rows" if node == "LockingClause"
                          else f"a data-modifying {node.removesuffix('Stmt').upper()} inside the query")
        if node == "SelectStmt" and f.get("intoClause"):
            raise _refuse("SELECT … INTO creates a table")
        if node == "ColumnRef":
            names = {p.get("String", {}).get("sval") for p in f.get("fields", [])}
            if names & DENIED_COLUMNS:
                raise _refuse(f"column {', '.join(sorted(n for n in names & DENIED_COLUMNS if n))} holds credentials")
        _check_call(node, f)


def check_catalog(conn: Any, statement: Statement, *, planning_only: bool = False) -> None:
    """Layer 3: what the statement calls and reads as the server resolves it, followed through views,
    operators, casts and function bodies (:mod:`agent19.safety.readonly_catalog`). ``planning_only``:
    the statement is planned, never executed, so its own volatile calls do not run."""
    resolver = Resolver(conn, _refuse, denied_function=denied_function, denied_relations=DENIED_RELATIONS,
                        denied_columns=DENIED_COLUMNS, harmless_volatile=HARMLESS_VOLATILE)
    resolver.check_statement(statement.tree, planning_only=planning_only)
