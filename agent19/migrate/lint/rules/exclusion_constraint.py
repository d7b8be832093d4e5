"""A19028 exclusion-constraint: an EXCLUDE constraint added to an existing table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        con = cmd.get("def", {}).get("Constraint", {})
        if subtype == "AT_AddConstraint" and con.get("contype") == "CONSTR_EXCLUSION":
            yield Hit(
                f"adding an exclusion constraint builds its index and checks every row of {short(ctx.relation)} "
                "under an AccessExclusiveLock; it cannot be added NOT VALID nor USING INDEX",
                "-- no online form exists: run it in a maintenance window, or create a new table with the "
                "constraint, copy the rows in batches (with a trigger for new writes) and swap the tables",
            )


RULE = Rule(
    code="A19028",
    name="exclusion-constraint",
    title="Adding an exclusion constraint blocks the table for an index build",
    severity="error",
    why="EXCLUDE constraints are enforced by an index built inside the ALTER TABLE under an AccessExclusiveLock. "
    "Unlike CHECK, FOREIGN KEY, UNIQUE and PRIMARY KEY there is no NOT VALID and no USING INDEX form.",
    alternative="Add exclusion constraints when the table is created, or in a maintenance window, or by "
    "copying into a new table that has the constraint and swapping.",
    bad="ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
    good="CREATE TABLE bookings (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&));",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AddConstraint",),
)
