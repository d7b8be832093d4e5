"""A19007 constraint-validation-scan: CHECK or FOREIGN KEY added without NOT VALID."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, ident, short, typed_tree

_KINDS = {"CONSTR_CHECK": ("check", "AccessExclusiveLock", "reads and writes"),
          "CONSTR_FOREIGN": ("fkey", "ShareRowExclusiveLock", "writes")}


def _columns(con: dict[str, Any]) -> list[str]:
    return [k.get("String", {}).get("sval", "") for k in con.get("fk_attrs", [])]


def not_valid_sql(ctx: StatementContext, sub: int, name: str) -> str:
    tree = typed_tree(ctx.sql)
    cmd = tree.cmds[sub]
    cmd.def_.conname = cmd.def_.conname or name
    cmd.def_.skip_validation = True
    cmd.def_.initially_valid = False
    tree.cmds = (cmd,)
    return deparse(tree)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        con = cmd.get("def", {}).get("Constraint", {})
        kind = _KINDS.get(con.get("contype", ""))
        if subtype != "AT_AddConstraint" or kind is None or con.get("skip_validation"):
            continue
        suffix, lock, blocked = kind
        base = (ctx.relation or "t").rpartition(".")[2]
        name = con.get("conname") or f"{base}_{'_'.join(_columns(con)) or 'expr'}_{suffix}"[:63]
        try:
            first = not_valid_sql(ctx, sub, name)
        except Exception:  # noqa: BLE001
            first = f"{ctx.sql} NOT VALID"
        what = "CHECK" if suffix == "check" else "FOREIGN KEY"
        yield Hit(
            f"adding {what} {con.get('conname') or ''}".rstrip() + f" validates every row of {short(ctx.relation)} "
            f"while holding a {lock}: {blocked} wait for the whole scan",
            f"{first};\n-- then, in a separate transaction (ShareUpdateExclusiveLock: reads and writes go on):\n"
            f"ALTER TABLE {short(ctx.relation)} VALIDATE CONSTRAINT {ident(name)};",
        )


RULE = Rule(
    code="A19007",
    name="constraint-validation-scan",
    title="CHECK or FOREIGN KEY added without NOT VALID scans the table under a blocking lock",
    severity="error",
    why="ADD CONSTRAINT … CHECK holds an AccessExclusiveLock, and ADD … FOREIGN KEY a ShareRowExclusiveLock on "
    "both tables, while every existing row is checked. NOT VALID skips that scan (new rows are still checked); "
    "VALIDATE CONSTRAINT later checks the old rows under a ShareUpdateExclusiveLock, which blocks neither reads "
    "nor writes.",
    alternative="ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT in its own transaction.",
    bad="ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id);",
    good="ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) "
    "NOT VALID;\nCOMMIT;\nALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fkey;",
    check=check,
    aliases=("constraint-missing-not-valid", "adding-foreign-key-constraint"),  # squawk's rule name(s)
)
