"""A19021 not-null-column-without-default: ADD COLUMN … NOT NULL with no default."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pglast import ast
from pglast.enums import ConstrType

from agent19.migrate import patterns
from agent19.migrate.lint.rules._base import (
    Hit,
    Rule,
    StatementContext,
    column_constraints,
    deparse,
    short,
    type_name,
    typed_tree,
)
from agent19.migrate.lint.rules.add_column_rewrite import SERIALS
from agent19.migrate.patterns.sqlnames import comment, ident, qualified

if TYPE_CHECKING:
    from agent19.migrate.patterns.model import Phase

_FILLS = {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}
VALUE_TO_FILL = "<value for existing rows>"
"""What the user writes in: only they know it. It does not parse until filled."""
KEYS_TO_FILL = "<a distinct value for each row>"
_SENTINEL = "agent19_value_to_fill"


def _with_default(ctx: StatementContext, sub: int) -> str:
    """The whole statement (every sub-command kept) with ``DEFAULT <value for existing rows>`` on this column."""
    tree = typed_tree(ctx.sql)
    coldef = tree.cmds[sub].def_
    fill = ast.Constraint(contype=ConstrType.CONSTR_DEFAULT, raw_expr=ast.ColumnRef(fields=(ast.String(_SENTINEL),)))
    coldef.constraints = (*(coldef.constraints or ()), fill)
    return deparse(tree).replace(_SENTINEL, VALUE_TO_FILL)


def _nullable(ctx: StatementContext, sub: int) -> str:
    """This ADD COLUMN alone, without NOT NULL / PRIMARY KEY (brief: no default, no rewrite)."""
    tree = typed_tree(ctx.sql)
    cmd = tree.cmds[sub]
    cmd.def_.constraints = tuple(c for c in cmd.def_.constraints or ()
                                 if c.contype not in (ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY)) or None
    tree.cmds = (cmd,)
    return deparse(tree)


def _renumbered(phases: list[Phase]) -> list[Phase]:
    return [dataclasses.replace(p, order=i) for i, p in enumerate(phases, start=1)]


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        coldef = cmd.get("def", {}).get("ColumnDef", {})
        if subtype != "AT_AddColumn":
            continue
        kinds = {c.get("contype") for c in column_constraints(coldef)}
        if "CONSTR_NOTNULL" not in kinds and "CONSTR_PRIMARY" not in kinds:
            continue
        if kinds & _FILLS or type_name(coldef.get("typeName", {})) in SERIALS:
            continue
        rel = ctx.fields.get("relation", {})
        table = qualified(rel.get("schemaname") or None, rel.get("relname", ""))
        # here, not at the top: every lint loads each rule; the pattern modules load when one needs them
        from agent19.migrate.patterns.live import find_table

        t = find_table(ctx.catalog, table)
        if t is not None and t.row_estimate == 0:
            continue
        raw = coldef.get("colname", "c")
        col = ident(raw)
        message = (f"adding NOT NULL column {col} with no default fails on {short(ctx.relation)} as soon as it has "
                   "a row (\"column contains null values\")")
        if "CONSTR_PRIMARY" in kinds:
            from agent19.migrate.patterns.model import fix_script

            steps = patterns.set_not_null(table, raw, backfill=KEYS_TO_FILL, pg_version=ctx.major).phases
            steps += patterns.add_primary_key(table, [raw], pg_version=ctx.major).phases
            yield Hit(message, "\n".join([
                comment(f"a primary key needs a distinct value in every existing row: add {col} nullable, fill it "
                        f"in batches (write the expression for {KEYS_TO_FILL}), then NOT NULL and the key"),
                f"{_nullable(ctx, sub)};", fix_script(_renumbered(steps))]))
            continue
        yield Hit(message, "\n".join([
            comment(f"fill in {VALUE_TO_FILL}: a constant that every existing row gets (kept in the catalog: no "
                    "rewrite since PostgreSQL 11); DROP DEFAULT afterwards if new rows must always give one"),
            f"{_with_default(ctx, sub)};",
            comment(f"or, when existing rows need computed values: add {col} nullable, backfill it, then NOT NULL "
                    f"through a validated CHECK: agent19 pattern set_not_null {shlex.quote(table)} --column "
                    f"{shlex.quote(raw)} --backfill '<expression>'"),
        ]))

RULE = Rule(
    code="A19021",
    name="not-null-column-without-default",
    title="Adding a NOT NULL column without a default fails on a populated table",
    severity="error",
    why="Existing rows would get NULL in the new column, which NOT NULL forbids, so the statement fails on any "
    "table with rows - typically only in production, after it passed on an empty development database.",
    alternative="Give the column a constant default (stored in the catalog, no rewrite since PostgreSQL 11), or "
    "add it nullable, backfill, and add NOT NULL through a validated CHECK constraint.",
    bad="ALTER TABLE orders ADD COLUMN currency text NOT NULL;",
    good="ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'EUR';",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AddColumn",),
    aliases=("adding-required-field",),  # squawk's rule name(s)
)
