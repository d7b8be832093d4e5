"""A19026 detach-partition-blocking: DETACH PARTITION without CONCURRENTLY."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        if subtype != "AT_DetachPartition" or cmd.get("def", {}).get("PartitionCmd", {}).get("concurrent"):
            continue
        if ctx.major >= 14:
            fix = f"{ctx.sql} CONCURRENTLY;  -- PostgreSQL 14+, outside a transaction block, not with a DEFAULT " \
                "partition; if interrupted, finish with DETACH PARTITION ... FINALIZE"
        else:
            fix = "SET lock_timeout = '5s';  -- PostgreSQL before 14 has no DETACH CONCURRENTLY: at least do not " \
                "queue traffic\n" + ctx.sql + ";"
        yield Hit(
            f"DETACH PARTITION takes an AccessExclusiveLock on {short(ctx.relation)}: brief, but every query on the "
            "partitioned table queues behind it while it waits",
            fix,
        )


RULE = Rule(
    code="A19026",
    name="detach-partition-blocking",
    title="DETACH PARTITION without CONCURRENTLY locks the whole partitioned table",
    severity="warning",
    why="A plain DETACH PARTITION needs an AccessExclusiveLock on the parent: every query on any partition waits "
    "for it, and behind it.",
    alternative="DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+) takes only a ShareUpdateExclusiveLock on the "
    "parent; it runs outside a transaction block.",
    bad="ALTER TABLE measurements DETACH PARTITION measurements_2020;",
    good="ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_DetachPartition",),
)
