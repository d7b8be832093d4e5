"""A19011 locks-held-in-transaction: a long statement while the transaction holds another blocking lock."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import BLOCKS_WRITES, Hit, Rule, StatementContext, lock_rank, short

DATA = {"update", "delete", "insert_select"}
"""Statements whose duration depends on the rows they touch (unknown without running them)."""


def _data_under_exclusive_lock(ctx: StatementContext) -> Iterator[Hit]:
    """An UPDATE/DELETE/INSERT … SELECT after an AccessExclusiveLock in the same transaction: that lock is held
    for as long as this statement runs (eugene's E4)."""
    if not any(o.kind in DATA for o in ctx.operations):
        return
    for prev in ctx.state.seen_in_transaction.get(ctx.tx_group, []):  # type: ignore[arg-type]
        held = [t for o in prev.operations for t in o.tables
                if (o.locks.get(t) or o.lock) == "AccessExclusiveLock" and not ctx.is_new(t) and not prev.is_new(t)]
        if held:
            yield Hit(
                f"the AccessExclusiveLock on {short(held[0])} taken at line {prev.statement.line} is held until "
                f"COMMIT: every read and write of it waits while this statement runs, for as long as its rows take",
                "-- commit the schema change first, then change the data in its own transaction(s):\nCOMMIT;\n"
                + ctx.sql + ";",
                severity="warning",
            )
            return


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.tx_group is None:
        return
    if not ctx.long_running():
        yield from _data_under_exclusive_lock(ctx)
        return
    mine = {t: o.locks.get(t) or o.lock for o in ctx.operations for t in o.tables}
    for prev in ctx.state.seen_in_transaction.get(ctx.tx_group, []):  # type: ignore[arg-type]
        for o in prev.operations:
            for table in o.tables:
                lock = o.locks.get(table) or o.lock
                if ctx.is_new(table) or prev.is_new(table) or lock not in BLOCKS_WRITES:
                    continue
                if lock_rank(mine.get(table)) >= lock_rank(lock):
                    continue  # this statement takes as strong a lock there anyway
                yield Hit(
                    f"the {lock} on {short(table)} taken at line {prev.statement.line} is held until COMMIT, so "
                    f"{'reads and writes' if lock == 'AccessExclusiveLock' else 'writes'} there wait for all "
                    "of this statement, which grows with the table",
                    "-- commit before this statement: run it in its own transaction\nCOMMIT;\nBEGIN;\n"
                    + ctx.sql + ";",
                )
                return


RULE = Rule(
    code="A19011",
    name="locks-held-in-transaction",
    title="A long statement in a transaction that already holds a blocking lock",
    severity="error",
    why="Locks are released at COMMIT, not when a statement ends. A quick ALTER TABLE followed, in the same "
    "transaction, by a VALIDATE CONSTRAINT, an index build, a backfill or any scan keeps the quick statement's "
    "AccessExclusiveLock for the whole long one: the table is blocked as if the quick statement were slow. "
    "An UPDATE or DELETE after it is a warning: how long it holds the lock depends on the rows it touches.",
    alternative="Give each long statement its own transaction, and take strong locks last, just before COMMIT.",
    bad="BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0) NOT VALID;\n"
    "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_check;\nCOMMIT;",
    good="BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0) NOT VALID;\nCOMMIT;\n"
    "BEGIN;\nALTER TABLE orders VALIDATE CONSTRAINT orders_total_check;\nCOMMIT;",
    check=check,
)
