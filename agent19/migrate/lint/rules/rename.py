"""A19013 rename: renaming a table or column, or moving a table to another schema, under running clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.errors import InputError
from agent19.migrate import patterns
from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, norm
from agent19.migrate.patterns.sqlnames import comment, ident, literal, qualified

TYPE_TO_FILL = "<column type>"
"""What the user writes in when the column's type is not known (no database): it does not parse until filled."""


def _table(rel: dict[str, Any]) -> str:
    return qualified(rel.get("schemaname") or None, rel.get("relname", ""))


def _later_in_transaction(ctx: StatementContext) -> Iterator[tuple[str, dict[str, Any]]]:
    """(node, fields) of the statements after this one that run in the same transaction: a whole transaction
    commits at once, so what they put back is never missing for a running client."""
    if ctx.tx_group is None:
        return
    key = f"{__name__}:{id(ctx.migration)}"
    known = ctx.state.cache.get(key)
    if known is None:  # computed once per file (a migration with many renames stays linear)
        statements = ctx.migration.statements
        known = ctx.state.cache[key] = ({id(s): i for i, s in enumerate(statements)},
                                        ctx.migration.transaction_groups())
    position, groups = known
    statements = ctx.migration.statements
    for j in range(position[id(ctx.statement)] + 1, len(statements)):
        if groups[j] != ctx.tx_group:
            return
        yield statements[j].node, statements[j].fields


def _same_rel(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("relname") == b.get("relname") and (a.get("schemaname") or None) == (b.get("schemaname") or None)


_NOT_SIMPLE = ("whereClause", "groupClause", "havingClause", "distinctClause", "limitCount", "limitOffset",
               "withClause", "windowClause", "valuesLists")


def _reads_all_of(query: dict[str, Any], new: dict[str, Any]) -> bool:
    """``SELECT * FROM new`` and nothing else: every row and column, and updatable, so old readers and writers work."""
    q = query.get("SelectStmt") or {}
    frm, targets = q.get("fromClause") or [], q.get("targetList") or []
    star = [t.get("ResTarget", {}).get("val", {}).get("ColumnRef", {}).get("fields") for t in targets]
    return (len(frm) == 1 and "RangeVar" in frm[0] and _same_rel(frm[0]["RangeVar"], new) and star == [[{"A_Star": {}}]]
            and q.get("op", "SETOP_NONE") == "SETOP_NONE" and not any(q.get(k) for k in _NOT_SIMPLE))


def _names_rel(names: list[dict[str, Any]], rel: dict[str, Any]) -> bool:
    """A DROP's object name (``[schema,] name``) is ``rel``."""
    parts = [n.get("String", {}).get("sval") for n in names]
    return parts == [p for p in (rel.get("schemaname") or None, rel.get("relname")) if p]


def _old_table_restored(ctx: StatementContext, rel: dict[str, Any], new: dict[str, Any]) -> bool:
    """The old name is, at COMMIT, a permanent view of all of ``new`` (the table under its new name) created in the
    same transaction — the rename_table pattern's expand step: not a temporary view (only the migration's session
    sees it), not a view of something else, not one dropped or renamed away again before COMMIT."""
    restored = False
    for node, f in _later_in_transaction(ctx):
        if node == "ViewStmt" and _same_rel(f.get("view") or {}, rel):
            restored = (f["view"].get("relpersistence") != "t" and _reads_all_of(f.get("query") or {}, new))
        elif node == "DropStmt" and any(_names_rel(o.get("List", {}).get("items", []), rel)
                                        for o in f.get("objects") or []):
            restored = False
        elif node in ("RenameStmt", "AlterObjectSchemaStmt") and _same_rel(f.get("relation") or {}, rel):
            restored = False
    return restored


def _old_column_restored(ctx: StatementContext, rel: dict[str, Any], old: str) -> bool:
    """Another column takes the old name in the same transaction (the column-type pattern's swap)."""
    return any(node == "RenameStmt" and f.get("renameType") == "OBJECT_COLUMN" and f.get("newname") == old
               and _same_rel(f.get("relation") or {}, rel) for node, f in _later_in_transaction(ctx))


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node == "AlterObjectSchemaStmt" and f.get("objectType") in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW"):
        rel = f.get("relation", {})
        target = {"schemaname": f.get("newschema"), "relname": rel.get("relname")} if rel else {}
        if rel and not ctx.is_new(ctx.relation) and not _old_table_restored(ctx, rel, target):
            old, moved = _table(rel), qualified(f.get("newschema", ""), rel.get("relname", ""))
            yield Hit(
                f"moving {old} to schema {ident(f.get('newschema', ''))} breaks every running client that names it "
                "by its old schema or finds it through search_path",
                f"BEGIN;\n{ctx.sql.strip().rstrip(';')};\nCREATE VIEW {old} AS SELECT * FROM {moved};  "
                "-- old clients keep working (a simple view is updatable)\nCOMMIT;\n"
                f"-- once no client uses the old name: DROP VIEW {old};",
            )
        return
    if ctx.node != "RenameStmt" or ctx.is_new(ctx.relation):
        return
    kind, rel = f.get("renameType"), f.get("relation", {})
    renamed = {"schemaname": rel.get("schemaname"), "relname": f.get("newname")} if rel else {}
    if kind in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW") and rel and _old_table_restored(ctx, rel, renamed):
        return
    if kind == "OBJECT_TABLE" and rel:
        # here, not at the top: every lint loads each rule; the pattern models load when a fix is written
        from agent19.migrate.patterns.model import fix_script

        table, new = _table(rel), f.get("newname", "")
        p = patterns.rename_table(table, new, pg_version=ctx.major)
        yield Hit(f"renaming {table} to {ident(new)} breaks every running client that still uses the old name",
                  fix_script(p.phases))
    elif kind in ("OBJECT_VIEW", "OBJECT_MATVIEW") and rel:
        old, new = _table(rel), qualified(rel.get("schemaname") or None, f.get("newname", ""))
        yield Hit(
            f"renaming {old} to {ident(f.get('newname', ''))} breaks every running client that still uses the old "
            "name",
            f"BEGIN;\n{ctx.sql.strip().rstrip(';')};\nCREATE VIEW {old} AS SELECT * FROM {new};  "
            "-- old clients keep working\nCOMMIT;\n"
            f"-- once no client uses the old name: DROP VIEW {old};",
        )
    elif kind == "OBJECT_COLUMN" and rel and not _old_column_restored(ctx, rel, f.get("subname", "")) and \
            (norm(ctx.relation or ""), f.get("subname", "")) not in ctx.state.added_columns:
        yield _column_hit(ctx, _table(rel), f.get("subname", ""), f.get("newname", ""))


def _column_hit(ctx: StatementContext, table: str, old: str, new: str) -> Hit:
    """The rename_column pattern (new column, two-way sync trigger, backfill, deploy, drop the old one), with the
    column's type, NOT NULL and default from the catalog — or the type to fill in when there is none."""
    # here, not at the top: every lint loads each rule; the pattern models load when a fix is written
    from agent19.migrate.patterns.live import find_table, live_from_snapshot
    from agent19.migrate.patterns.model import fix_script

    known = find_table(ctx.catalog, table)
    live = live_from_snapshot(ctx.catalog, known, old) if ctx.catalog is not None and known is not None else None
    head: list[str] = []
    if live is None:
        head = [comment(f"fill in {TYPE_TO_FILL}: the type of {ident(old)}, as SELECT format_type(atttypid, "
                        f"atttypmod) FROM pg_attribute WHERE attrelid = {literal(table)}::regclass AND attname = "
                        f"{literal(old)} shows it (with a database, --dsn, agent19 writes it in)"),
                comment(f"not known here: whether {ident(old)} is NOT NULL or has a default - carry them over to "
                        f"{ident(new)} if it does (agent19 pattern rename_column ... --not-null --default ...)")]
    message = (f"renaming column {ident(old)} to {ident(new)} breaks every running client that reads or writes "
               f"{ident(old)}")
    try:
        p = patterns.rename_column(table, old, new, None if live else TYPE_TO_FILL, pg_version=ctx.major, live=live)
    except InputError as exc:  # a column the pattern cannot move (primary key, generated…): say so, and what to do
        return Hit(message, comment(f"no zero-downtime pattern: {exc}"))
    head += [comment(n) for n in p.notes]
    return Hit(f"renaming column {ident(old)} to {ident(new)} breaks every running client that reads or writes "
               f"{ident(old)}", "\n".join([*head, fix_script(p.phases)]))

RULE = Rule(
    code="A19013",
    name="rename",
    title="Renaming a table or column, or moving a table to another schema, breaks running clients",
    severity="error",
    why="The rename is instant, but application servers still running the old code (during a rolling deploy, "
    "or ones you forgot) fail on every query that uses the old name.",
    alternative="Expand and contract: for a table, rename it and leave an updatable view with the old name; "
    "for a column, add the new column, keep both in step with a trigger, move the clients, then drop the old one.",
    bad="ALTER TABLE orders RENAME COLUMN total TO amount;",
    good="ALTER TABLE orders ADD COLUMN amount numeric(12,2);",
    check=check,
    nodes=("AlterObjectSchemaStmt", "RenameStmt"),
    aliases=("renaming-column", "renaming-table"),  # squawk's rule name(s)
)
