"""A19029 type-change-with-check: ALTER COLUMN TYPE on a column that CHECK constraints read."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, ident, norm, short, typed_tree


def _checks(ctx: StatementContext, col: str) -> list[tuple[str, str]]:
    """(name, definition) of the validated CHECKs on ``ctx.relation`` that read ``col`` (catalog, then migration)."""
    found: list[tuple[str, str]] = []
    t = ctx.table(ctx.relation)
    if t is not None:
        found += [(c.name, c.definition) for c in t.constraints
                  if c.type == "check" and c.validated and col in (c.columns or [])]
    table = norm(ctx.relation or "")
    found += [(name, "CHECK (<condition>)") for name, cols in ctx.state.check_names.items()
              if (table, col) in cols and (table, col) in ctx.state.check_columns and name not in dict(found)]
    return found


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        col = cmd.get("name", "")
        if subtype != "AT_AlterColumnType" or op is None or op.rewrite or not op.scan:
            continue  # a rewriting change is reported by A19005
        table = short(ctx.relation)
        try:
            new_type = deparse(typed_tree(ctx.sql).cmds[sub].def_.typeName)
        except Exception:  # noqa: BLE001 — a fix is a suggestion; the finding stands without it
            new_type = "<new type>"
        checks = _checks(ctx, col) or [("<check>", "CHECK (<condition>)")]
        drops = ", ".join(f"DROP CONSTRAINT {ident(n) if n != '<check>' else n}" for n, _ in checks)
        adds = ", ".join(f"ADD CONSTRAINT {ident(n) if n != '<check>' else n} {d.removesuffix(' NOT VALID')} NOT VALID"
                         for n, d in checks)
        validates = "\n".join(f"ALTER TABLE {table} VALIDATE CONSTRAINT {ident(n) if n != '<check>' else n};"
                               for n, _ in checks)
        yield Hit(
            f"{col} is read by CHECK constraint(s) {', '.join(n for n, _ in checks)}: changing its type re-checks "
            f"them against every row of {table} under an AccessExclusiveLock, even though the table is not "
            "rewritten",
            "-- in one statement, drop the CHECK, change the type (no scan) and re-add the CHECK NOT VALID; then "
            "VALIDATE it in its own transaction (ShareUpdateExclusiveLock: reads and writes go on):\n"
            f"ALTER TABLE {table} {drops}, ALTER COLUMN {ident(col)} TYPE {new_type}, {adds};\n{validates}",
        )


RULE = Rule(
    code="A19029",
    name="type-change-with-check",
    title="A type change re-checks the column's CHECK constraints with a full scan",
    severity="error",
    why="When ALTER COLUMN TYPE needs no rewrite (varchar widening, varchar -> text...), PostgreSQL still "
    "re-evaluates every CHECK constraint that reads the column against every row, holding the AccessExclusiveLock "
    "(observed on PostgreSQL 15 and 16: every row is read under the lock). The change is only instant for "
    "columns without CHECKs.",
    alternative="In one ALTER TABLE, drop the CHECK, change the type and re-add the CHECK NOT VALID; then "
    "VALIDATE it in its own transaction (ShareUpdateExclusiveLock).",
    bad="ALTER TABLE orders ADD COLUMN note varchar(20);\n"
    "ALTER TABLE orders ADD CONSTRAINT orders_note_check CHECK (note <> '') NOT VALID;\n"
    "ALTER TABLE orders VALIDATE CONSTRAINT orders_note_check;\n"
    "ALTER TABLE orders ALTER COLUMN note TYPE varchar(40);",
    good="ALTER TABLE orders ADD COLUMN note varchar(20);\n"
    "ALTER TABLE orders ALTER COLUMN note TYPE varchar(40);  -- no CHECK reads note: instant",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AlterColumnType",),
)
