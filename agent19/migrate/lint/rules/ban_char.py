"""A19044 ban-char (style): char(n) / character(n) columns."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, StatementContext
from agent19.migrate.lint.rules._style import declared_columns, style_rule


def check(ctx: StatementContext) -> Iterator[Hit]:
    for col in declared_columns(ctx):
        if col.type == "bpchar":
            yield Hit(f"{col.label} is char(n): values are blank-padded to n, trailing spaces are ignored by = but "
                      "not by LIKE or by clients, and it is no faster than text",
                      f"{col.name} text  -- with a CHECK on char_length() if the length is a rule")


RULE = style_rule(
    code="A19044",
    name="ban-char",
    aliases=("ban-char-field", "ban-char-type"),
    title="Do not use char(n) (style)",
    why="char(n) pads with spaces and compares ignoring them, which surprises clients and LIKE; it takes the "
    "same space as text or more.",
    alternative="text (or varchar), with a CHECK when a fixed length is required.",
    bad="CREATE TABLE countries (code char(2) PRIMARY KEY);",
    good="CREATE TABLE countries (code text PRIMARY KEY CHECK (char_length(code) = 2));",
    check=check,
)
