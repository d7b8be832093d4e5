"""A19042 prefer-text (style): varchar(n) instead of text (with a CHECK when a limit matters)."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, StatementContext
from agent19.migrate.lint.rules._style import declared_columns, style_rule


def check(ctx: StatementContext) -> Iterator[Hit]:
    for col in declared_columns(ctx):
        if col.type == "varchar" and col.typmods:
            yield Hit(f"{col.label} is varchar(n): text stores the same, and a limit held in a CHECK can be "
                      "changed without the AccessExclusiveLock a shorter varchar needs (a rewrite)",
                      f"{col.name} text  -- plus CHECK (char_length({col.name}) <= n) NOT VALID if the limit matters")


RULE = style_rule(
    code="A19042",
    name="prefer-text",
    aliases=("prefer-text-field",),
    title="Prefer text (with a CHECK) to varchar(n) (style)",
    why="varchar(n) and text are stored alike. Lowering the limit later rewrites the table; a CHECK on "
    "char_length() can be replaced NOT VALID and validated without blocking writes.",
    alternative="text, with CHECK (char_length(col) <= n) when the limit is a business rule.",
    bad="CREATE TABLE users (id bigint PRIMARY KEY, email varchar(255));",
    good="CREATE TABLE users (id bigint PRIMARY KEY, email text CHECK (char_length(email) <= 255));",
    check=check,
)
