"""A19035 alter-domain-add-constraint: a validated constraint added to a domain scans every column using it."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, typed_tree
from agent19.migrate.patterns.sqlnames import ident
from agent19.sqltree import qualified_name


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "AlterDomainStmt" or f.get("subtype") not in ("C", "N"):
        return
    domain = qualified_name(f.get("typeName", []))
    if f.get("subtype") == "N":
        yield Hit(
            f"SET NOT NULL on domain {domain} reads every row of every table with a column of that type, holding a "
            "ShareLock on each (writes wait)",
            "-- put NOT NULL on the columns instead, each via a validated CHECK (see A19006)",
        )
        return
    con = f.get("def", {}).get("Constraint", {})
    if con.get("skip_validation"):
        return
    name = ident(con.get("conname") or f"{domain.rpartition('.')[2]}_check")
    try:  # the statement's own condition, so that the fix runs as written
        condition = deparse(typed_tree(ctx.sql).def_.raw_expr)
    except Exception:  # noqa: BLE001 - a fix is a suggestion; the finding stands without it
        condition = "<condition>"
    yield Hit(
        f"ADD CONSTRAINT on domain {domain} checks every row of every table with a column of that type, holding a "
        "ShareLock on each table (writes wait for the scan)",
        f"ALTER DOMAIN {domain} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID;  -- new values only: no scan\n"
        f"-- ALTER DOMAIN ... VALIDATE CONSTRAINT scans under the same ShareLock (observed on 15): instead, put the "
        "CHECK on the table columns as NOT VALID and VALIDATE those (ShareUpdateExclusiveLock: writes go on)",
    )


RULE = Rule(
    code="A19035",
    name="alter-domain-add-constraint",
    title="A constraint added to a domain scans every column of that type under a ShareLock",
    severity="error",
    why="ALTER DOMAIN ... ADD CONSTRAINT (and SET NOT NULL) verifies the rule against every stored value of every "
    "column that uses the domain, in every table, holding a ShareLock that blocks their writes meanwhile "
    "(observed on PostgreSQL 15: tests/test_lint_statements.py).",
    alternative="Add the domain's CHECK as NOT VALID (it then holds for new values only). Validating it later "
    "takes the same ShareLock, so to prove old rows put the CHECK on the table columns instead, where NOT VALID "
    "+ VALIDATE lets writes go on.",
    bad="ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0);",
    good="ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0) NOT VALID;",
    check=check,
    nodes=("AlterDomainStmt",),
    aliases=("ban-alter-domain-with-add-constraint",),  # squawk's rule name(s)
)
