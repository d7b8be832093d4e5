"""A19037 transaction-nesting: BEGIN inside a transaction, BEGIN never committed, COMMIT with nothing open."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext

BEGIN = {"TRANS_STMT_BEGIN", "TRANS_STMT_START"}
END = {"TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE"}


def _kind(ctx: StatementContext, index: int) -> str | None:
    s = ctx.migration.statements[index]
    return s.fields.get("kind") if s.node == "TransactionStmt" else None


def _file_scan(ctx: StatementContext) -> tuple[list[bool], list[bool]]:
    """For each statement of the file: whether a transaction is open before it, and whether a COMMIT/ROLLBACK
    comes after it — one pass per file, not one per BEGIN (a file of many blocks was quadratic)."""
    key = f"transaction_nesting:{id(ctx.migration)}"
    if key not in ctx.state.cache:
        kinds = [_kind(ctx, i) for i in range(len(ctx.migration.statements))]
        opens, open_now = [], False
        for k in kinds:
            opens.append(open_now)
            open_now = True if k in BEGIN else False if k in END else open_now
        ends, end_later = [False] * len(kinds), False
        for i in range(len(kinds) - 1, -1, -1):
            ends[i], end_later = end_later, end_later or kinds[i] in END
        ctx.state.cache[key] = (opens, ends)
    return ctx.state.cache[key]  # type: ignore[no-any-return]


def check(ctx: StatementContext) -> Iterator[Hit]:
    kind = ctx.fields.get("kind") if ctx.node == "TransactionStmt" else None
    if kind not in BEGIN:
        return
    me = ctx.statement.index
    opens, ends = _file_scan(ctx)
    open_before = opens[me]
    # golang-migrate and Prisma send the file as one query string: a BEGIN there turns PostgreSQL's implicit
    # transaction into an explicit one (no nesting). Flyway runs statements one by one in its own transaction.
    tool = "Flyway" if ctx.migration.convention == "flyway" else None
    if open_before:
        yield Hit(
            "BEGIN inside a transaction that is already open: PostgreSQL only warns, and the first COMMIT ends both - "
            "what follows it runs outside any transaction",
            "-- remove the inner BEGIN (and its COMMIT)",
        )
    elif ctx.migration.wrapped and tool:
        yield Hit(
            f"{tool} already runs this file in a transaction: this BEGIN is ignored (PostgreSQL warns) and its COMMIT "
            f"ends {tool}'s transaction, so the statements after it, and {tool}'s own bookkeeping, run outside it",
            f"-- remove BEGIN/COMMIT and let {tool} wrap the file",
            severity="warning",
        )
    if not ends[me]:
        yield Hit(
            "BEGIN is never committed or rolled back in this file: when the session ends, everything after it is "
            "rolled back (or the next migration runs inside it)",
            ctx.sql + ";\n-- ... the migration ...\nCOMMIT;",
        )


RULE = Rule(
    code="A19037",
    name="transaction-nesting",
    title="Nested BEGIN, or BEGIN without COMMIT",
    severity="error",
    why="PostgreSQL has no nested transactions: a second BEGIN only raises a warning, and the first COMMIT "
    "commits everything, leaving the rest of the migration outside a transaction. A BEGIN never committed "
    "loses the migration's work when the session ends. Migration tools that wrap each file in a transaction "
    "statement by statement (Flyway) make any BEGIN in the file a nested one.",
    alternative="One BEGIN ... COMMIT per block, each closed in the same file; none at all when Flyway wraps "
    "the file.",
    bad="BEGIN;\nALTER TABLE orders ADD COLUMN note text;",
    good="BEGIN;\nALTER TABLE orders ADD COLUMN note text;\nCOMMIT;",
    check=check,
    nodes=("TransactionStmt",),
)
