"""A19043 prefer-timestamptz (style): timestamp without time zone."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, StatementContext
from agent19.migrate.lint.rules._style import declared_columns, style_rule


def check(ctx: StatementContext) -> Iterator[Hit]:
    for col in declared_columns(ctx):
        if col.type == "timestamp":
            yield Hit(f"{col.label} is timestamp without time zone: the same instant reads differently per session "
                      "TimeZone, and DST transitions make local times ambiguous",
                      f"{col.name} timestamptz")


RULE = style_rule(
    code="A19043",
    name="prefer-timestamptz",
    aliases=("prefer-timestamp-tz",),
    title="Prefer timestamptz to timestamp (style)",
    why="timestamptz stores an absolute instant (UTC) and converts on display; timestamp stores a wall-clock "
    "reading whose meaning depends on a zone the database does not know.",
    alternative="timestamptz for points in time; keep timestamp only for zone-less local times (e.g. schedules).",
    bad="ALTER TABLE orders ADD COLUMN shipped_at timestamp;",
    good="ALTER TABLE orders ADD COLUMN shipped_at timestamptz;",
    check=check,
)
