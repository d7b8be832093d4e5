"""A19018 update-without-where: a full-table UPDATE as a data migration."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, every_row, short, typed_tree
from agent19.migrate.patterns.sqlnames import comment, qualified

_PLACEHOLDER = "agent19_t"


def set_list(sql: str) -> str | None:
    """The SET list of a plain ``UPDATE table SET …`` (no alias, FROM, WITH or RETURNING: the batches repeat it
    against the table alone), from its syntax tree; None otherwise."""
    tree = typed_tree(sql)
    if tree.fromClause or tree.withClause or getattr(tree, "returningList", None) \
            or getattr(tree, "returningClause", None) or tree.relation.alias is not None:
        return None
    tree.relation = ast.RangeVar(relname=_PLACEHOLDER, inh=True, relpersistence="p")
    tree.whereClause = None  # a WHERE true for every row (A19018 flags only those) selects nothing less
    text = deparse(tree)
    prefix = f"UPDATE {_PLACEHOLDER} SET "
    return text[len(prefix):] if text.startswith(prefix) else None


def batched(ctx: StatementContext) -> str:
    """The keyset backfill of the same UPDATE: the procedure over the table's key when the catalog knows it, else
    the ``agent19 backfill`` command — one short transaction per batch, resumable, each row visited once."""
    rel = ctx.fields.get("relation", {})
    table = qualified(rel.get("schemaname") or None, rel.get("relname", ""))
    assignments = set_list(ctx.sql)
    if assignments is None:
        return comment("write it as UPDATE ... SET ... on the table alone (no FROM, WITH, alias or RETURNING) and run "
                       f"it with agent19 backfill {table} --set '...' --mode execute: keyset batches over the primary "
                       "key, one short transaction each, resumable")
    # here, not at the top: every lint loads each rule (the backfill scripts: below, where a catalog knows the key)
    from agent19.migrate.patterns.live import find_table, single_key
    from agent19.migrate.patterns.model import BackfillStep, Phase, phase_sql

    step = BackfillStep(table=table, set=assignments)
    key = single_key(find_table(ctx.catalog, table))
    if key is not None:  # a catalog knows the key: the keyset procedure (the scripts load the backfill executor)
        from agent19.migrate.backfill.scripts import keyset_backfill

        lines = keyset_backfill(*key)(step)
    else:
        lines = phase_sql(Phase(name="backfill", order=1, backfill=step))
    return "\n".join([comment("outside the schema migration: keyset batches over the primary key, one short "
                               "transaction each, resumable (each row is visited once)"), *lines])


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "UpdateStmt" or ctx.is_new(ctx.relation) or (how := every_row(ctx)) is None:
        return
    yield Hit(
        f"UPDATE {how} rewrites every row of {short(ctx.relation)} in one transaction: each row stays locked "
        "against other writers until it commits, the table doubles in size, and replicas fall behind",
        batched(ctx),
    )

RULE = Rule(
    code="A19018",
    name="update-without-where",
    title="Full-table UPDATE in a migration: batch it",
    severity="error",
    why="An UPDATE of every row in one transaction writes a new version of each row, holds a row lock on each "
    "until COMMIT (concurrent updates of those rows wait), bloats the table and its indexes, and produces a "
    "burst of WAL that replicas must replay.",
    alternative="Backfill in keyset batches over the primary key, each in its own transaction, outside the schema "
    "migration: agent19 backfill (or the procedure it emits).",
    bad="UPDATE orders SET status = 'open';",
    good="UPDATE orders SET status = 'open' WHERE id BETWEEN 1 AND 10000 AND status IS NULL;",
    check=check,
    nodes=("UpdateStmt",),
)
