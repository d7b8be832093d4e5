"""A19019 table-rewrite-command: VACUUM FULL, CLUSTER, SET LOGGED / SET UNLOGGED, SET TABLESPACE."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, rel_name, short


def _what(ctx: StatementContext) -> tuple[str, list[str]] | None:
    f = ctx.fields
    if ctx.node == "VacuumStmt" and any(o.get("DefElem", {}).get("defname") == "full" for o in f.get("options", [])):
        rels = [rel_name(r.get("VacuumRelation", {}).get("relation", {})) for r in f.get("rels", [])]
        return "VACUUM FULL", rels or ["every table of the database"]
    if ctx.node == "ClusterStmt":
        return "CLUSTER", [ctx.relation] if ctx.relation else ["every previously clustered table"]
    for _, subtype, _cmd in ctx.alter_cmds():
        if subtype in ("AT_SetLogged", "AT_SetUnLogged"):
            return ("SET LOGGED" if subtype == "AT_SetLogged" else "SET UNLOGGED"), [ctx.relation or "?"]
        if subtype == "AT_SetTableSpace":
            return "SET TABLESPACE", [ctx.relation or "?"]
    return None


def check(ctx: StatementContext) -> Iterator[Hit]:
    what = _what(ctx)
    if what is None:
        return
    verb, tables = what
    tables = [t for t in tables if not ctx.is_new(t)]
    if not tables:
        return
    fix = ("-- to reclaim space or re-order rows online use pg_repack or pg_squeeze (extensions); "
           "plain VACUUM does not block")
    if verb == "SET TABLESPACE":
        fix = ("-- no online form: run it in a maintenance window (the files are copied block by block), or build "
               "a copy of the table in the new tablespace, keep it in step, and swap")
    elif verb.startswith("SET"):
        fix = ("-- no online form: run it in a maintenance window, or create the new table with the wanted "
               "persistence, copy in batches and swap")
    yield Hit(
        f"{verb} rewrites {', '.join(short(t) if '.' in t else t for t in tables)} under an AccessExclusiveLock: "
        "no reads or writes until the rewrite ends",
        fix,
    )


RULE = Rule(
    code="A19019",
    name="table-rewrite-command",
    title="VACUUM FULL, CLUSTER, SET LOGGED/UNLOGGED and SET TABLESPACE rewrite the table under an AccessExclusiveLock",
    severity="error",
    why="These commands copy the whole table (and rebuild its indexes) while holding an AccessExclusiveLock; "
    "SET LOGGED also writes the whole table to the WAL; SET TABLESPACE copies every file of the table.",
    alternative="Use plain VACUUM (no blocking lock), or pg_repack / pg_squeeze to compact or re-order online; "
    "change persistence in a maintenance window.",
    bad="VACUUM FULL orders;",
    good="VACUUM (ANALYZE) orders;",
    check=check,
    nodes=("VacuumStmt", "ClusterStmt", "AlterTableStmt"),
    subcommands=("AT_SetLogged", "AT_SetUnLogged", "AT_SetTableSpace"),
)
