"""A19006 set-not-null-scan: SET NOT NULL that scans the table under an AccessExclusiveLock."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, LazyText, Rule, StatementContext, ident, norm, short
from agent19.migrate.lint.rules._shape import by_names
from agent19.migrate.patterns.sqlnames import qualified, split_name


def proven_not_null(ctx: StatementContext, column: str) -> bool:
    """A validated CHECK (col IS NOT NULL) exists: in this migration, or in the live catalog."""
    table = norm(ctx.relation or "")
    if (table, column) in ctx.state.validated_not_null:
        return True
    # here, not at the top: every lint loads each rule; the pattern modules load when one needs them
    from agent19.migrate.patterns.live import find_table

    t = find_table(ctx.catalog, statement_table(ctx))
    if t is None:
        return False
    needle = f"({ident(column)} IS NOT NULL)"
    return any(c.type == "check" and c.validated and needle in c.definition for c in t.constraints)


def not_null_fix(table: str, column: str, major: int) -> str:
    """The set_not_null pattern's phases (CHECK NOT VALID → VALIDATE → SET NOT NULL → drop the CHECK) as a fix;
    ``table`` as the statement wrote it (:func:`statement_table`); once per version for plain names (:func:`~agent19.
    migrate.lint.rules._shape.by_names`)."""
    schema, rel = split_name(table)
    return by_names(_fix_by_names, (rel, column) if schema is None else (schema, rel, column), major)


def _fix_by_names(names: tuple[str, ...], major: int) -> str:
    # here, not at the top: every lint loads each rule; the pattern models load when a fix is written
    from agent19.migrate.patterns.constraints import not_null_phases
    from agent19.migrate.patterns.model import fix_script

    return fix_script(not_null_phases(qualified(*names[:-1]), names[-1], major))


def statement_table(ctx: StatementContext) -> str:
    """The statement's table as it wrote it, as SQL (a table named ``a.b`` stays one name)."""
    rel = ctx.fields.get("relation", {})
    return qualified(rel.get("schemaname") or None, rel.get("relname", ""))


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype != "AT_SetNotNull" or op is None:
            continue
        column = cmd.get("name", "")
        if not op.scan or (ctx.major >= 12 and proven_not_null(ctx, column)):  # 11 scans whatever CHECK exists
            continue
        assumed = "" if ctx.catalog is not None or ctx.major < 12 else (
            f" (assumed: without a database it is unknown whether a validated CHECK ({ident(column)} IS NOT NULL) "
            "already proves it, which skips the scan - connect one with --dsn to know)")
        yield Hit(
            f"SET NOT NULL on {column} reads all of {short(ctx.relation)} while holding an AccessExclusiveLock: "
            f"reads and writes wait for the scan{assumed}",
            LazyText(not_null_fix, statement_table(ctx), column, ctx.major),  # written when read
        )


RULE = Rule(
    code="A19006",
    name="set-not-null-scan",
    title="SET NOT NULL scans the table under an AccessExclusiveLock",
    severity="error",
    why="ALTER COLUMN ... SET NOT NULL checks every row while holding an AccessExclusiveLock. From PostgreSQL 12 "
    "the scan is skipped when a validated CHECK (col IS NOT NULL) constraint already proves it.",
    alternative="Add CHECK (col IS NOT NULL) NOT VALID (instant), VALIDATE it in a separate transaction "
    "(ShareUpdateExclusiveLock: reads and writes go on), then SET NOT NULL (no scan) and drop the CHECK.",
    bad="ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;",
    good="ALTER TABLE orders ADD CONSTRAINT orders_customer_id_not_null CHECK (customer_id IS NOT NULL) NOT VALID;\n"
    "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_not_null;\n"
    "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"
    "ALTER TABLE orders DROP CONSTRAINT orders_customer_id_not_null;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_SetNotNull",),
    aliases=("adding-not-nullable-field",),  # squawk's rule name(s)
)
