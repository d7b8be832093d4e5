"""A19009 attach-partition-scan: ATTACH PARTITION that must scan the partition to prove its bound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate import patterns
from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, norm, rel_name, typed_tree
from agent19.migrate.patterns.sqlnames import comment, ident, literal, qualified, short

KEY_TO_FILL = "<partition key>"
BOUND_TO_FILL = "<a condition that implies the partition bound>"
"""What the user writes in when it cannot be known here. Neither parses until filled."""


def _bound_check(sql: str, sub: int, key: str, parent: str) -> str | None:
    """The CHECK expression equivalent to a FOR VALUES clause on a one-column partition key ``key`` (the server
    proves the bound from it: "partition constraint … is implied by existing constraints", observed on 15)."""
    bound = typed_tree(sql).cmds[sub].def_.bound
    if bound is None or bound.is_default:
        return None
    if bound.strategy == "h":
        return (f"satisfies_hash_partition({literal(parent)}::regclass::oid, {bound.modulus}, {bound.remainder}, "
                f"{key})")
    if bound.strategy == "l":
        return f"{key} IS NOT NULL AND {key} IN ({', '.join(deparse(v) for v in bound.listdatums)})"
    if bound.strategy == "r" and len(bound.lowerdatums) == 1:
        lo, hi = deparse(bound.lowerdatums[0]), deparse(bound.upperdatums[0])
        parts = [f"{key} IS NOT NULL"]
        if lo.upper() != "MINVALUE":
            parts.append(f"{key} >= {lo}")
        if hi.upper() != "MAXVALUE":
            parts.append(f"{key} < {hi}")
        return " AND ".join(parts)
    return None  # hash partitions, multi-column keys


def _key(ctx: StatementContext) -> str | None:
    """The parent's one-column (or one-expression) partition key as SQL: from the catalog, or from the CREATE TABLE …
    PARTITION BY of the parent in the linted migrations."""
    # here, not at the top: every lint loads each rule; the pattern models load when a fix is written
    from agent19.migrate.patterns.live import find_table

    t = find_table(ctx.catalog, qualified_relation(ctx))
    if t and t.partition_key:
        inner = t.partition_key.partition("(")[2].rpartition(")")[0]
        return inner.strip() if inner and "," not in inner else None
    for st in ctx.state.set_statements:
        rel = st.fields.get("relation")
        if st.node == "CreateStmt" and isinstance(rel, dict) and norm(rel_name(rel)) == norm(ctx.relation or ""):
            elems = [e.get("PartitionElem", {}) for e in (st.fields.get("partspec") or {}).get("partParams", [])]
            return ident(elems[0]["name"]) if len(elems) == 1 and elems[0].get("name") else None
    return None


def check(ctx: StatementContext) -> Iterator[Hit]:
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype != "AT_AttachPartition" or op is None or not op.scan:
            continue
        part: dict[str, Any] = cmd.get("def", {}).get("PartitionCmd", {}).get("name", {})
        if ctx.is_new(rel_name(part)):
            continue
        child = qualified(part.get("schemaname") or None, part.get("relname", ""))
        why = ("no validated CHECK constraint implies the bound" if ctx.catalog is not None else
               "assumed: without a database it is unknown whether a validated CHECK on it implies the bound, "
               "which skips the scan - connect one with --dsn to know")
        yield Hit(
            f"ATTACH PARTITION scans all of {child} under an AccessExclusiveLock on it to prove the rows "
            f"fit the bound, because {why}",
            _fix(ctx, sub, child, part.get("relname", "")),
        )


def _fix(ctx: StatementContext, sub: int, child: str, child_rel: str) -> str:
    """The add_check pattern (NOT VALID, VALIDATE) for a CHECK equal to the bound, then the attach (no scan) and
    the CHECK dropped; what cannot be known here is named, to fill in."""
    # here, not at the top: every lint loads each rule; the pattern models load when a fix is written
    from agent19.migrate.patterns.model import Phase, Step, fix_script

    key = _key(ctx)
    parent = qualified_relation(ctx)
    expr = _bound_check(ctx.sql, sub, key or KEY_TO_FILL, parent)
    head = []
    if expr is None:
        expr = BOUND_TO_FILL
        head.append(comment(f"fill in {BOUND_TO_FILL}: the bound as a condition on the key columns (range: each "
                            "column IS NOT NULL and the row between the bounds; list: key IN (...) AND key IS NOT "
                            "NULL) - the server then proves the bound from the CHECK instead of scanning (a DEFAULT "
                            "partition has no such CHECK: attach it in a quiet window)"))
    elif key is None:
        head.append(comment(f"fill in {KEY_TO_FILL}: the partition key column of {parent}, as SELECT "
                            f"pg_get_partkeydef({literal(parent)}::regclass) shows it (with a database, --dsn, "
                            "agent19 writes it in)"))
    name = short(child_rel, "_partition_bound")
    check = patterns.add_check(child, name, expr, pg_version=ctx.major)
    attach = Phase(
        name="attach (no scan: the validated CHECK proves the bound) and drop the CHECK", order=3,
        operations=[Step(sql=ctx.sql.strip().rstrip(";"), lock="AccessExclusiveLock",
                         note="ShareUpdateExclusiveLock on the parent, AccessExclusiveLock on the partition, brief; "
                         "a DEFAULT partition of the parent is still scanned"),
                    Step(sql=f"ALTER TABLE {child} DROP CONSTRAINT {ident(name)}", lock="AccessExclusiveLock")])
    return "\n".join([*head, fix_script([*check.phases, attach])])


def qualified_relation(ctx: StatementContext) -> str:
    rel = ctx.fields.get("relation", {})
    return qualified(rel.get("schemaname") or None, rel.get("relname", ""))

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
    nodes=("AlterTableStmt",),
    subcommands=("AT_AttachPartition",),
)
