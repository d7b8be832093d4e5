"""A19024 combine-alters: several ALTER TABLE statements on one table that could be one."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, short, typed_tree

_SEPARATE = {"AT_ValidateConstraint", "AT_AttachPartition", "AT_DetachPartition", "AT_DetachPartitionFinalize"}


def _combinable(ctx: StatementContext) -> bool:
    subtypes = [s for _, s, _ in ctx.alter_cmds()]
    return (bool(subtypes) and not set(subtypes) & _SEPARATE and not ctx.long_running()
            and ctx.lock == "AccessExclusiveLock")


def _added(ctx: StatementContext) -> set[str]:
    """Columns and constraints the statement's sub-commands add."""
    out = set()
    for _, subtype, cmd in ctx.alter_cmds():
        d = cmd.get("def", {})
        name = d.get("ColumnDef", {}).get("colname") or d.get("Constraint", {}).get("conname")
        if subtype in ("AT_AddColumn", "AT_AddConstraint") and name:
            out.add(name)
    return out


def _acted_on(ctx: StatementContext) -> set[str]:
    """The columns and constraints the sub-commands alter, drop or validate (by name)."""
    return {cmd["name"] for _, _, cmd in ctx.alter_cmds() if cmd.get("name")}


def combined(prev: StatementContext, ctx: StatementContext) -> str:
    """One ALTER TABLE with the sub-commands of ``prev`` and then of ``ctx`` (built from their syntax trees)."""
    first, tree = typed_tree(prev.sql), typed_tree(ctx.sql)
    tree.cmds = (*first.cmds, *tree.cmds)
    return deparse(tree)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "AlterTableStmt" or ctx.is_new(ctx.relation) or not _combinable(ctx):
        return
    prev = ctx.state.last_touch.get(ctx.relation or "")
    if prev is None or prev.node != "AlterTableStmt" or prev.relation != ctx.relation or not _combinable(prev) \
            or prev.tx_group != ctx.tx_group:
        return
    if _added(prev) & _acted_on(ctx):
        return  # it alters what the earlier one adds: PostgreSQL runs sub-commands in its own order, not as written
    line = prev.statement.line
    yield Hit(
        f"{short(ctx.relation)} was already altered at line {line}: each ALTER TABLE waits "
        "for its own AccessExclusiveLock; one statement with both sub-commands waits once",
        f"-- in place of the statement at line {line} and this one:\n{combined(prev, ctx)};",
    )

RULE = Rule(
    code="A19024",
    name="combine-alters",
    title="Several ALTER TABLE statements on one table could be one",
    severity="info",
    why="Each ALTER TABLE statement queues for the table's AccessExclusiveLock separately (and, outside a "
    "transaction, lets traffic in between). One ALTER TABLE with several comma-separated sub-commands takes the "
    "lock once and, when rewrites are involved, rewrites once.",
    alternative="Combine brief sub-commands on one table into one ALTER TABLE. Keep apart what must be apart: "
    "VALIDATE CONSTRAINT and other long steps belong in their own transaction.",
    bad="ALTER TABLE orders ADD COLUMN note text;\nALTER TABLE orders ADD COLUMN tag text;",
    good="ALTER TABLE orders ADD COLUMN note text, ADD COLUMN tag text;",
    check=check,
    nodes=("AlterTableStmt",),
)
