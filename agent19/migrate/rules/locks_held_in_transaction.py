"""A19011 locks-held-in-transaction: a long statement while the transaction holds another blocking lock."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import BLOCKS_WRITES, Hit, Rule, StatementContext, lock_rank, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.tx_group is None or not ctx.long_running():
        return
    mine = {t: o.locks.get(t) or o.lock for o in ctx.operations for t in o.tables}
    for prev in ctx.state.seen:
        if prev.tx_group != ctx.tx_group:
            continue
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
    "AccessExclusiveLock for the whole long one: the table is blocked as if the quick statement were slow.",
    alternative="Give each long statement its own transaction, and take strong locks last, just before COMMIT.",
    bad="BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0) NOT VALID;\n"
    "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_check;\nCOMMIT;",
    good="BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0) NOT VALID;\nCOMMIT;\n"
    "BEGIN;\nALTER TABLE orders VALIDATE CONSTRAINT orders_total_check;\nCOMMIT;",
    check=check,
)
