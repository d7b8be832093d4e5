"""A19022 int-primary-key: a 32-bit (or 16-bit) primary key in a new table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, column_constraints, ident, type_name

SMALL = {"int4": "integer", "int2": "smallint", "serial": "serial", "serial4": "serial", "smallserial": "smallserial",
         "serial2": "smallserial", "int": "integer", "integer": "integer", "smallint": "smallint"}


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "CreateStmt":
        return
    elts = ctx.fields.get("tableElts", [])
    cols = {e["ColumnDef"].get("colname"): e["ColumnDef"] for e in elts if "ColumnDef" in e}
    pk: list[str] = [n for n, c in cols.items() if any(k.get("contype") == "CONSTR_PRIMARY"
                                                       for k in column_constraints(c))]
    for e in elts:
        con = e.get("Constraint", {})
        if con.get("contype") == "CONSTR_PRIMARY":
            pk += [k.get("String", {}).get("sval", "") for k in con.get("keys", [])]
    for name in pk:
        t = type_name(cols.get(name, {}).get("typeName", {}))
        if t in SMALL:
            yield Hit(
                f"primary key {name} is {SMALL[t]}: it runs out at 2,147,483,647 rows"
                + (" (32,767 for smallint)" if "small" in SMALL[t] else "")
                + ", and widening it later rewrites the table and every referencing one",
                f"{ident(name)} bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            )


RULE = Rule(
    code="A19022",
    name="int-primary-key",
    title="Use bigint for primary keys of new tables",
    severity="info",
    why="An integer key overflows at about 2.1 billion values (sequences also burn values on rollbacks and "
    "failed inserts). Changing it to bigint later is a full rewrite of the table and of every table that "
    "references it. A bigint costs 4 more bytes per row.",
    alternative="bigint GENERATED ALWAYS AS IDENTITY (or bigserial) for new tables.",
    bad="CREATE TABLE invoices (id serial PRIMARY KEY, total numeric);",
    good="CREATE TABLE invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, total numeric);",
    check=check,
)
