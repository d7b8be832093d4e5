"""A19007 constraint-validation-scan: CHECK or FOREIGN KEY added without NOT VALID."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, typed_tree
from agent19.migrate.patterns.sqlnames import ident, qualified
from agent19.migrate.patterns.sqlnames import short as fit

_KINDS = {"CONSTR_CHECK": ("check", "AccessExclusiveLock", "reads and writes"),
          "CONSTR_FOREIGN": ("fkey", "ShareRowExclusiveLock", "writes")}


def _columns(con: dict[str, Any]) -> list[str]:
    return [k.get("String", {}).get("sval", "") for k in con.get("fk_attrs", [])]


def _scanning(ctx: StatementContext) -> list[tuple[int, dict[str, Any]]]:
    """(sub-command index, Constraint) of every CHECK / FOREIGN KEY the statement adds without NOT VALID."""
    out = []
    for sub, subtype, cmd in ctx.alter_cmds():
        con = cmd.get("def", {}).get("Constraint", {})
        if subtype == "AT_AddConstraint" and con.get("contype") in _KINDS and not con.get("skip_validation"):
            out.append((sub, con))
    return out


def _default_name(rel: str, con: dict[str, Any], taken: set[str]) -> str:
    """The name PostgreSQL would choose (``t_check``, ``t_a_b_fkey``; a digit added while it is taken)."""
    check = con.get("contype") == "CONSTR_CHECK"
    base, suffix = (rel, "_check") if check else (f"{rel}_{'_'.join(_columns(con))}", "_fkey")
    name, n = fit(base, suffix), 0
    while name in taken:
        n += 1
        name = fit(base, f"{suffix}{n}")
    return name


def not_valid_fix(ctx: StatementContext) -> tuple[str, list[str]]:
    """The whole statement — every sub-command kept — with each scanning CHECK / FOREIGN KEY made NOT VALID (and
    named, so it can be validated), and the names to VALIDATE."""
    # here, not at the top: every lint loads each rule; the pattern modules load when one needs them
    from agent19.migrate.patterns.live import find_table

    tree = typed_tree(ctx.sql)
    rel = tree.relation
    table = find_table(ctx.catalog, qualified(rel.schemaname or None, rel.relname))
    taken = {c.name for c in table.constraints} if table is not None else set()
    taken |= {c.get("conname") for _, c in _scanning(ctx) if c.get("conname")}
    names = []
    for sub, con in _scanning(ctx):
        node = tree.cmds[sub].def_
        if not node.conname:
            node.conname = _default_name(tree.relation.relname, con, taken)
            taken.add(node.conname)
        node.skip_validation = True
        node.initially_valid = False
        names.append(node.conname)
    return deparse(tree), names


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    scanning = _scanning(ctx)
    if not scanning:
        return
    rel = ctx.fields.get("relation", {})
    table = qualified(rel.get("schemaname") or None, rel.get("relname", ""))
    first, names = not_valid_fix(ctx)
    validate = "\n".join(f"ALTER TABLE {table} VALIDATE CONSTRAINT {ident(n)};" for n in names)
    fix = (f"{first};\n-- then, in a separate transaction (ShareUpdateExclusiveLock: reads and writes go on):\n"
           f"{validate}")
    for _, con in scanning:
        _, lock, blocked = _KINDS[con["contype"]]
        what = "CHECK" if con["contype"] == "CONSTR_CHECK" else "FOREIGN KEY"
        yield Hit(
            f"adding {what} {ident(con['conname']) if con.get('conname') else ''}".rstrip()
            + f" validates every row of {table} while holding a {lock}: {blocked} wait for the whole scan",
            fix,
        )


RULE = Rule(
    code="A19007",
    name="constraint-validation-scan",
    title="CHECK or FOREIGN KEY added without NOT VALID scans the table under a blocking lock",
    severity="error",
    why="ADD CONSTRAINT ... CHECK holds an AccessExclusiveLock, and ADD ... FOREIGN KEY a ShareRowExclusiveLock on "
    "both tables, while every existing row is checked. NOT VALID skips that scan (new rows are still checked); "
    "VALIDATE CONSTRAINT later checks the old rows under a ShareUpdateExclusiveLock, which blocks neither reads "
    "nor writes.",
    alternative="ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in its own transaction.",
    bad="ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id);",
    good="ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) "
    "NOT VALID;\nCOMMIT;\nALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fkey;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AddConstraint",),
    aliases=("constraint-missing-not-valid", "adding-foreign-key-constraint"),  # squawk's rule name(s)
)
