"""A19012 missing-lock-timeout: an AccessExclusiveLock requested with no lock_timeout set."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext, short


def sets_lock_timeout(ctx: StatementContext) -> bool:
    """``SET [LOCAL] lock_timeout = <non-zero>`` (or ``set_config('lock_timeout', …)``)."""
    f = ctx.fields
    if ctx.node == "VariableSetStmt" and f.get("name") == "lock_timeout":
        args = f.get("args", [])
        value = args[0].get("A_Const", {}) if args else {}
        text = str(value.get("sval", {}).get("sval", value.get("ival", {}).get("ival", 0)))
        return f.get("kind") == "VAR_SET_VALUE" and text.strip() not in ("0", "", "0s", "0ms")
    return "set_config('lock_timeout'" in ctx.sql.replace('"', "'").replace(" ", "").lower()


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.state.lock_timeout or (ctx.tx_group is not None and ctx.tx_group == ctx.state.lock_timeout_tx):
        return
    tables: list[str] = []
    for o in ctx.operations:
        pairs = o.locks.items() if o.locks else [(t, o.lock) for t in o.tables]
        tables += [t for t, lock in pairs if lock == "AccessExclusiveLock" and not ctx.is_new(t)]
    if not tables:
        return
    yield Hit(
        f"takes an AccessExclusiveLock on {short(tables[0])} with no lock_timeout: if a long query holds the table, "
        "this statement waits, and every query after it queues behind it (an outage, even for an instant ALTER)",
        "SET lock_timeout = '5s';  -- before the first statement; retry the migration if it times out\n"
        + ctx.sql + ";",
    )


RULE = Rule(
    code="A19012",
    name="missing-lock-timeout",
    title="No lock_timeout before a statement that needs an AccessExclusiveLock",
    severity="warning",
    why="A request for an AccessExclusiveLock waits behind every running query on the table, and every query "
    "that arrives after it waits behind the request. One long SELECT can turn an instant ALTER TABLE into an "
    "outage. lock_timeout makes the statement give up instead.",
    alternative="Start the migration with SET lock_timeout (a few seconds) and retry on timeout.",
    bad="ALTER TABLE orders ADD COLUMN note text;",
    good="SET lock_timeout = '5s';\nALTER TABLE orders ADD COLUMN note text;",
    check=check,
)
