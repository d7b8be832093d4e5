"""A19031 concurrent-index-pg14: CREATE/REINDEX CONCURRENTLY on PostgreSQL 14.0–14.3."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext


def check(ctx: StatementContext) -> Iterator[Hit]:
    if not 140000 <= ctx.pg_version < 140004:
        return
    concurrent = ctx.node == "IndexStmt" and ctx.fields.get("concurrent")
    if ctx.node == "ReindexStmt":
        concurrent = any(
            p.get("DefElem", {}).get("defname") == "concurrently" for p in ctx.fields.get("params") or []
        )
    if concurrent:
        yield Hit(
            f"PostgreSQL {ctx.pg_version // 10000}.{ctx.pg_version % 100} can build a corrupt index with "
            "CONCURRENTLY when rows are updated during the build (fixed in 14.4)",
            "-- upgrade to 14.4 or later first; then check existing indexes with amcheck "
            "(SELECT bt_index_check(index => c.oid, heapallindexed => true) ...) and REINDEX the damaged ones",
        )


RULE = Rule(
    code="A19031",
    name="concurrent-index-pg14",
    title="CREATE INDEX / REINDEX CONCURRENTLY on PostgreSQL 14.0-14.3 can corrupt the index",
    severity="error",
    why="A bug in PostgreSQL 14.0 to 14.3 let CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY miss rows "
    "updated during the build (HOT chains), silently producing an index that returns wrong results.",
    alternative="Upgrade to 14.4 or later before building indexes concurrently; check indexes built on the "
    "affected versions with amcheck and rebuild the damaged ones.",
    bad="CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);",
    good="CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);  -- on 14.4",
    check=check,
    nodes=("IndexStmt", "ReindexStmt"),
    pg_version=140002,
    good_pg_version=140004,
)
