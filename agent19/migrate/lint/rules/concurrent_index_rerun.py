"""A19038 concurrent-index-rerun: CREATE INDEX CONCURRENTLY that cannot be re-run after a failed build."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext
from agent19.migrate.patterns.sqlnames import qname


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "IndexStmt" or not f.get("concurrent") or f.get("if_not_exists") or not f.get("idxname"):
        return
    schema = (f.get("relation") or {}).get("schemaname")
    index = qname(f"{schema}.{f['idxname']}" if schema else f["idxname"])
    yield Hit(
        f"if this build fails (a deadlock, a duplicate key, a cancel), PostgreSQL leaves an INVALID index {index} "
        "behind: it slows every write and the re-run fails with \"already exists\"",
        f"DROP INDEX CONCURRENTLY IF EXISTS {index};  -- only if a previous attempt left it INVALID "
        "(pg_index.indisvalid = false)\n" + ctx.sql.replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS", 1)
        .replace("concurrently", "concurrently IF NOT EXISTS", 1) + ";",
    )


RULE = Rule(
    code="A19038",
    name="concurrent-index-rerun",
    title="CREATE INDEX CONCURRENTLY without IF NOT EXISTS cannot be re-run after a failed build",
    severity="warning",
    why="A concurrent build that fails is not rolled back: the index stays, marked INVALID, still maintained on "
    "every write. Re-running the migration then fails on the name. IF NOT EXISTS makes the re-run pass, but "
    "it would keep the invalid index: drop an invalid leftover first.",
    alternative="Use CREATE INDEX CONCURRENTLY IF NOT EXISTS, and before a re-run drop the index if "
    "pg_index.indisvalid is false.",
    bad="CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);",
    good="CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_created_at_idx ON orders (created_at);",
    check=check,
    nodes=("IndexStmt",),
)
