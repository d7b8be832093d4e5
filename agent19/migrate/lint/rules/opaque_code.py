"""A19048 opaque-code: a DO block, a CALL or a bare SELECT of a function: code lint cannot read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate.classification.knowledge import NON_VOLATILE_FUNCTIONS, VOLATILE_FUNCTIONS
from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext
from agent19.tool_names import at_cli, tool

WHAT_A_DRY_RUN_SAYS = "reports what each statement dropped or renamed, however it did, and rolls it back"


def fix() -> str:
    """How to see what the code does, as the reader runs agent19: the command at the CLI, the tool to a model."""
    if at_cli():
        return f"-- dry-run it: agent19 dry-run <file> --mode dry-run --dsn ... ({WHAT_A_DRY_RUN_SAYS})"
    return f"-- dry-run it: call {tool('test_migration')} with the migration ({WHAT_A_DRY_RUN_SAYS})"
KNOWN = VOLATILE_FUNCTIONS | NON_VOLATILE_FUNCTIONS
"""Built-ins whose effect is known (a sequence's setval, now()...): not opaque."""


def _name(call: dict[str, Any]) -> str:
    return ".".join(p.get("String", {}).get("sval", "") for p in call.get("funcname", []))


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node == "DoStmt":
        yield Hit("a DO block runs code lint cannot read: what it drops, locks or rewrites (by itself or through "
                  "dynamic SQL) shows only when it runs", fix())
    elif ctx.node == "CallStmt":
        yield Hit("CALL runs a procedure whose body lint cannot read: what it drops, locks or rewrites shows only "
                  "when it runs", fix())
    elif called := _called(ctx):
        yield Hit(f"calls {', '.join(c + '()' for c in called)}: a function's body (and the triggers it fires) "
                  "is not linted - what it drops, locks or rewrites shows only when it runs", fix(), "info")


def _called(ctx: StatementContext) -> list[str]:
    """The functions a statement calls whose code lint cannot know: in a bare ``SELECT f()`` (called for what it
    does) any function but the built-ins lint knows; anywhere else (a FROM, a target list, SET, VALUES, a CTE, a
    DEFAULT) a function named with its schema, other than pg_catalog's - an unqualified name there is most often a
    built-in (lower(), count()...) and lint, offline, has no list of them all."""
    bare = ctx.node == "SelectStmt" and not ctx.fields.get("fromClause")
    return sorted({n for f in ctx.nodes("FuncCall") if (n := _name(f)) and not n.startswith(("pg_", "pg_catalog."))
                   and ("." in n if not bare else n not in KNOWN)})


RULE = Rule(
    code="A19048",
    name="opaque-code",
    title="DO block, CALL or function call: its effect cannot be read",
    severity="warning",
    why="Lint reads the statements of the migration, not the code they run: a DO block, a procedure or a function "
    "(and any trigger it fires) can drop, lock or rewrite tables that no statement names.",
    alternative="Write the DDL as plain statements; where code must run, dry-run the migration (agent19 dry-run), "
    "which reports what each statement dropped or renamed, however it did.",
    bad="DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'old_orders'; END $$;",
    good="DROP TABLE IF EXISTS old_orders;",
    check=check,
    nodes=("DoStmt", "CallStmt", "SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "AlterTableStmt",
           "CreateStmt", "CreateTableAsStmt"),
)
