"""A19024 combine-alters: several ALTER TABLE statements on one table that could be one."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, short

_SEPARATE = {"AT_ValidateConstraint", "AT_AttachPartition", "AT_DetachPartition", "AT_DetachPartitionFinalize"}


def _combinable(ctx: StatementContext) -> bool:
    subtypes = [s for _, s, _ in ctx.alter_cmds()]
    return (bool(subtypes) and not set(subtypes) & _SEPARATE and not ctx.long_running()
            and ctx.lock == "AccessExclusiveLock")


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "AlterTableStmt" or ctx.is_new(ctx.relation) or not _combinable(ctx):
        return
    prev = ctx.state.last_touch.get(ctx.relation or "")
    if prev is not None and prev.node == "AlterTableStmt" and prev.relation == ctx.relation \
            and _combinable(prev) and prev.tx_group == ctx.tx_group:
        yield Hit(
            f"{short(ctx.relation)} was already altered at line {prev.statement.line}: each ALTER TABLE waits "
            "for its own AccessExclusiveLock; one statement with both sub-commands waits once",
            f"ALTER TABLE {short(ctx.relation)} <sub-commands of line {prev.statement.line}>, "
            "<sub-commands of this statement>;",
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
)
