"""Which kinds of statement lose nothing: an explicit allowlist. Every other kind is destructive until
shown otherwise.

Reading a statement cannot prove what it does (a trigger, a rule, a view, a column default or a
function can hide anything), so execute mode does not rely on spotting the dangerous kinds. It
admits a statement without the confirmation protocol only when its kind is listed here, and even
then it runs it first and *measures* what it touched (:mod:`agent19.safety.measure`):

* ``SAFE`` — kinds that create, describe or maintain and cannot remove rows or definitions by
  themselves (CREATE TABLE, CREATE INDEX, ANALYZE, COMMENT…). They still run under measurement
  when they can run in a transaction, so a trigger or function they set off is still caught.
* ``MEASURED`` — kinds whose reach depends on the data (INSERT, UPDATE, DELETE, MERGE, SELECT,
  EXPLAIN ANALYZE): run in a savepoint, the rows they touched compared with each table's exact row
  count, rolled back and turned into a confirmation challenge above the threshold.

Anything else — DROP OWNED, DROP ROLE, CREATE RULE, CREATE TRIGGER, ALTER SYSTEM, COPY, GRANT,
REVOKE, CREATE OR REPLACE FUNCTION, a kind added in a future PostgreSQL — goes through the
confirmation protocol as ``not_known_safe``. Adding a kind here is a claim that it loses nothing;
make it with a test.
"""

from __future__ import annotations

from typing import Any

from agent19.migrate.parse import Statement

MEASURED = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "SelectStmt", "ExplainStmt"}
"""Kinds whose effect depends on the data: admitted after measuring the rows they touched."""

SAFE: dict[str, str] = {
    "CreateStmt": "creates a table",
    "CreateTableAsStmt": "creates a table (or materialized view) from a query",
    "IndexStmt": "creates an index",
    "ViewStmt": "creates a view (OR REPLACE must keep every column)",
    "CreateSeqStmt": "creates a sequence",
    "CreateSchemaStmt": "creates a schema",
    "CreateEnumStmt": "creates a type",
    "CompositeTypeStmt": "creates a type",
    "CreateDomainStmt": "creates a domain",
    "CreateRangeStmt": "creates a type",
    "AlterEnumStmt": "adds or renames an enum value",
    "CreateStatsStmt": "creates extended statistics",
    "CreateExtensionStmt": "installs an extension's objects",
    "CreatedbStmt": "creates a database",
    "CommentStmt": "sets a comment",
    "VacuumStmt": "vacuums or analyzes",
    "ReindexStmt": "rebuilds indexes",
    "ClusterStmt": "rewrites a table in index order, keeping every row",
    "RefreshMatViewStmt": "recomputes a materialized view from its query",
    "RenameStmt": "renames an object",
    "LockStmt": "locks tables until the end of the call's transaction",
    "CheckPointStmt": "forces a checkpoint",
    "VariableShowStmt": "shows a setting",
    "CreateFunctionStmt": "creates a function (not OR REPLACE: see below)",
    "AlterTableStmt": "changes a table (only the subcommands in SAFE_ALTER_TABLE)",
}

SAFE_ALTER_TABLE = {
    "AT_AddColumn", "AT_ColumnDefault", "AT_DropNotNull", "AT_SetNotNull", "AT_AddConstraint",
    "AT_ValidateConstraint", "AT_AddIndex", "AT_AddIndexConstraint", "AT_SetStatistics", "AT_SetStorage",
    "AT_SetCompression", "AT_ClusterOn", "AT_SetRelOptions", "AT_ResetRelOptions", "AT_AddIdentity",
    "AT_SetIdentity", "AT_AttachPartition", "AT_CookedColumnDefault", "AT_AlterColumnType", "AT_DropColumn",
}
"""ALTER TABLE subcommands that lose nothing by themselves. DROP COLUMN and ALTER COLUMN TYPE are
listed because :mod:`agent19.safety.detect` already judges them (and sends the losing ones to the
protocol); everything else (DROP CONSTRAINT, DETACH PARTITION, SET UNLOGGED, DISABLE TRIGGER,
OWNER TO, ENABLE RULE…) is not known safe."""

NO_TRANSACTION = {"CreatedbStmt", "DropdbStmt"}
"""Kinds PostgreSQL always refuses inside a transaction block; VACUUM (not ANALYZE alone), CONCURRENTLY builds and
drops, REINDEX of a schema, the system or the database and CLUSTER without a table too
(:func:`runs_outside_transaction`). They run unmeasured — run_sql admits only the safe ones this way, and only when
the user code they run passes :mod:`agent19.safety.unmeasured` (DROP DATABASE is destructive: it runs only through
the confirmation protocol, also outside a transaction block)."""
_REINDEX_MANY = {"REINDEX_OBJECT_SCHEMA", "REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"}


def unlisted_reason(st: Statement) -> str | None:
    """Why ``st`` is not known to lose nothing; None when its kind is allowlisted."""
    node, f = st.node, st.fields
    if node in MEASURED:
        return None
    if node not in SAFE:
        kind = node.removesuffix("Stmt")
        return (f"{kind} is not on agent19's list of statement kinds known to lose nothing, so it is treated as "
                "destructive (its effect cannot be measured or verified before it runs)")
    if node == "CreateFunctionStmt" and f.get("replace"):
        return ("CREATE OR REPLACE FUNCTION replaces an existing body: a trigger or default calling it would run "
                "the new code, which cannot be verified here")
    if node == "ViewStmt" and f.get("replace"):
        return None
    if node == "AlterTableStmt":
        subs = [c.get("AlterTableCmd", {}).get("subtype", "?") for c in f.get("cmds", [])]
        unknown = [s for s in subs if s not in SAFE_ALTER_TABLE]
        if unknown:
            return ("ALTER TABLE " + ", ".join(s.removeprefix("AT_") for s in unknown)
                    + " is not known to lose nothing, so it is treated as destructive")
    return None


def runs_outside_transaction(st: Statement) -> bool:
    """Whether ``st`` cannot run in the savepoint a measurement needs. ANALYZE can: it is measured like a write (it
    evaluates index and statistics expressions, which may call code that writes). REFRESH MATERIALIZED VIEW
    CONCURRENTLY could too, but its own deletes and inserts would read as a mass write: it runs unmeasured, its
    query and indexes judged by :mod:`agent19.safety.unmeasured`."""
    f: dict[str, Any] = st.fields
    if st.node == "VacuumStmt":
        return bool(f.get("is_vacuumcmd"))
    if st.node == "ReindexStmt":
        return _reindex_concurrently(f) or f.get("kind") in _REINDEX_MANY
    if st.node == "ClusterStmt":
        return f.get("relation") is None
    return st.node in NO_TRANSACTION or bool(f.get("concurrent"))


def _reindex_concurrently(f: dict[str, Any]) -> bool:
    for p in f.get("params", []) or []:
        if p.get("DefElem", {}).get("defname") == "concurrently":
            return True
    return False
