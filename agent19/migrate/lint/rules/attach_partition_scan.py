"""A19009 attach-partition-scan: ATTACH PARTITION that must scan the partition to prove its bound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, ident, rel_name, short, typed_tree


def _bound_check(sql: str, sub: int, key: str) -> str | None:
    """The CHECK expression equivalent to a FOR VALUES clause on partition key ``key``."""
    try:
        bound = typed_tree(sql).cmds[sub].def_.bound
    except Exception:  # noqa: BLE001
        return None
    if bound is None or bound.is_default:
        return None
    if bound.strategy == "l":
        return f"{key} IS NOT NULL AND {key} IN ({', '.join(deparse(v) for v in bound.listdatums)})"
    if bound.strategy == "r":
        lo, hi = deparse(bound.lowerdatums[0]), deparse(bound.upperdatums[0])
        parts = [f"{key} IS NOT NULL"]
        if lo.upper() != "MINVALUE":
            parts.append(f"{key} >= {lo}")
        if hi.upper() != "MAXVALUE":
            parts.append(f"{key} < {hi}")
        return " AND ".join(parts)
    return None


def _key(ctx: StatementContext) -> str:
    t = ctx.table(ctx.relation)
    if t and t.partition_key:
        inner = t.partition_key.partition("(")[2].rstrip(")")
        if inner and "," not in inner:
            return inner.strip()
    return "<partition key>"


def check(ctx: StatementContext) -> Iterator[Hit]:
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype != "AT_AttachPartition" or op is None or not op.scan:
            continue
        part: dict[str, Any] = cmd.get("def", {}).get("PartitionCmd", {}).get("name", {})
        child = rel_name(part)
        if ctx.is_new(child):
            continue
        key = _key(ctx)
        expr = _bound_check(ctx.sql, sub, key) or "<the partition bound as an expression>"
        name = ident(f"{child.rpartition('.')[2]}_partition_bound")
        why = ("no validated CHECK constraint implies the bound" if ctx.catalog is not None else
               "assumed: without a database it is unknown whether a validated CHECK on it implies the bound, "
               "which skips the scan — connect one with --dsn to know")
        yield Hit(
            f"ATTACH PARTITION scans all of {short(child)} under an AccessExclusiveLock on it to prove the rows "
            f"fit the bound, because {why}",
            f"ALTER TABLE {short(child)} ADD CONSTRAINT {name} CHECK ({expr}) NOT VALID;\n"
            f"ALTER TABLE {short(child)} VALIDATE CONSTRAINT {name};  -- no blocking lock\n"
            f"{ctx.sql};  -- now proven by the CHECK: no scan\n"
            f"ALTER TABLE {short(child)} DROP CONSTRAINT {name};",
        )


RULE = Rule(
    code="A19009",
    name="attach-partition-scan",
    title="ATTACH PARTITION without a matching CHECK constraint scans the partition",
    severity="error",
    why="ATTACH PARTITION takes a ShareUpdateExclusiveLock on the parent and an AccessExclusiveLock on the table "
    "being attached, and reads every row of it to check the partition bound, unless a validated CHECK "
    "constraint on it already implies the bound. (A DEFAULT partition of the parent is scanned too.)",
    alternative="Add a CHECK constraint equal to the bound NOT VALID, VALIDATE it (no blocking lock), attach "
    "(no scan), then drop the CHECK.",
    bad="ALTER TABLE measurements ATTACH PARTITION measurements_2024 "
    "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
    good="CREATE TABLE measurements_2025 (LIKE measurements);\n"
    "ALTER TABLE measurements ATTACH PARTITION measurements_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
    check=check,
)
