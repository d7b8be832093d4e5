"""A19012 missing-lock-timeout: a lock that blocks reads or writes requested with no lock_timeout set."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import BLOCKS_WRITES, Hit, LazyText, Rule, StatementContext, lock_rank, short

CREATES = {"create_table", "create_table_as", "create_sequence", "create_materialized_view"}
"""Kinds whose target is the object they create: nobody else can be waiting on it."""
QUIET = {"refresh_materialized_view_concurrently"}
"""ExclusiveLock on a materialized view: only another REFRESH conflicts (nobody writes a view), so no "
reader queues behind it."""


def sets_lock_timeout(ctx: StatementContext) -> bool:
    """``SET [LOCAL] lock_timeout = <non-zero>`` (or ``set_config('lock_timeout', …)``)."""
    f = ctx.fields
    if ctx.node == "VariableSetStmt" and f.get("name") == "lock_timeout":
        args = f.get("args", [])
        value = args[0].get("A_Const", {}) if args else {}
        text = str(value.get("sval", {}).get("sval", value.get("ival", {}).get("ival", 0)))
        return f.get("kind") == "VAR_SET_VALUE" and text.strip() not in ("0", "", "0s", "0ms")
    sql = ctx.sql
    if "'" not in sql and '"' not in sql:  # no quoted text: no set_config('lock_timeout', …) (most statements)
        return False
    return "set_config('lock_timeout'" in sql.replace('"', "'").replace(" ", "").lower()


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.state.lock_timeout or (ctx.tx_group is not None and ctx.tx_group == ctx.state.lock_timeout_tx):
        return
    locked: list[tuple[str, str]] = []
    long_running: bool | None = None  # asked once, and only about a weaker write-blocking lock
    for o in ctx.operations:
        if o.kind in QUIET:
            continue
        pairs = list(o.locks.items() if o.locks else [(t, o.lock) for t in o.tables])
        creates = o.kind in CREATES or (o.kind == "create_view" and not ctx.fields.get("replace"))
        if creates and o.tables:
            pairs = [(t, lock) for t, lock in pairs if t != o.tables[0]]
        for t, lock in pairs:
            if lock != "AccessExclusiveLock":
                if lock not in BLOCKS_WRITES:
                    continue
                if long_running is None:
                    long_running = ctx.long_running()
                if long_running:  # weaker write-blocking locks of a long statement (CREATE INDEX…): its own error
                    continue
            if not ctx.is_new(t):
                locked.append((t, lock))  # type: ignore[arg-type]
    if not locked:
        return
    table, lock = max(locked, key=lambda pair: lock_rank(pair[1]))
    # both written when read: the table's name and the statement's text are held by its report anyway
    yield Hit(LazyText(_message, table, lock), LazyText(_with_timeout, ctx.sql))


def _message(table: str, lock: str) -> str:
    blocked = "every query" if lock == "AccessExclusiveLock" else "every write"
    article = "an" if lock[0] in "AEIOU" else "a"
    return (f"takes {article} {lock} on {short(table)} with no lock_timeout: if a long transaction holds the table, "
            f"this statement waits, and {blocked} on it queues behind the wait (an outage, even for an instant change)")


RULE = Rule(
    code="A19012",
    name="missing-lock-timeout",
    title="No lock_timeout before a statement that takes a lock blocking reads or writes",
    severity="warning",
    why="A request for an AccessExclusiveLock waits behind every running query on the table, and every query "
    "that arrives after it waits behind the request. One long SELECT can turn an instant ALTER TABLE into an "
    "outage. The same holds for writes behind the ShareLock / ShareRowExclusiveLock of CREATE TRIGGER, "
    "ENABLE/DISABLE TRIGGER or a NOT VALID foreign key. lock_timeout makes the statement give up instead.",
    alternative="Start the migration with SET lock_timeout (a few seconds) and retry on timeout.",
    bad="ALTER TABLE orders ADD COLUMN note text;",
    good="SET lock_timeout = '5s';\nALTER TABLE orders ADD COLUMN note text;",
    check=check,
    aliases=("require-timeout-settings",),  # squawk's rule name(s)
)


def _with_timeout(sql: str) -> str:
    return f"SET lock_timeout = '5s';  -- before the first statement; retry the migration if it times out\n{sql};"
