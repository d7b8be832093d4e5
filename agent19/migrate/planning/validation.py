"""The validation queries a plan runs before and after the migration, read from its statements."""

from __future__ import annotations

from typing import Any

from agent19.migrate.classification.state import TEMP
from agent19.migrate.lint.rules._base import rel_name
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement
from agent19.migrate.patterns.sqlnames import literal, qualified, split_name
from agent19.migrate.planning.model import ValidationCheck


def validation_checks(ops: list[Operation], statements: dict[int, Statement]) -> list[ValidationCheck]:
    checks = [ValidationCheck(
        name="no long transactions",
        query="SELECT count(*) FROM pg_stat_activity WHERE xact_start < now() - interval '5 minutes' "
        "AND pid <> pg_backend_pid()",
        expected="0 (a long transaction holds locks the migration would queue behind)", blocking=True,
        phase="before")]
    leaving = _columns_leaving(statements)
    renames = _index_renames(statements)
    for op in ops:
        if op.tables and split_name(op.tables[0])[0] == TEMP:
            continue  # a temporary table: gone when the migration's session ends, before any check after it
        s = statements.get(op.statement_index)
        f = s.fields if s else {}
        rel = f.get("relation")
        table = rel_name(rel) if isinstance(rel, dict) else (op.tables[0] if op.tables else None)
        # as written: an unqualified name resolves through the search_path (current_schema()), like the migration
        written = _regclass_text(rel) if isinstance(rel, dict) else table
        shown = (".".join(p for p in (rel.get("schemaname"), rel.get("relname")) if p)
                 if isinstance(rel, dict) else table)
        if s and s.node == "CreateStmt" and table:
            checks.append(ValidationCheck(name=f"{shown} exists", query=f"SELECT to_regclass({written}) IS NOT NULL",
                                          expected="true", blocking=True))
        elif s and s.node == "IndexStmt" and f.get("idxname"):
            schema = rel.get("schemaname") if isinstance(rel, dict) else None
            name = _index_name_after(renames, s.index, schema, f["idxname"])
            index = _regclass_text({"schemaname": schema, "relname": name})
            checks.append(ValidationCheck(
                name=f"index {name} is valid",
                query=f"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass({index})",
                expected="true (a failed CONCURRENTLY build leaves an INVALID index: drop it and retry)",
                blocking=True))
        elif op.kind == "add_column" and table and s:
            for cmd in (c for n, c in _walk_cmds(s) if n == "AT_AddColumn"):
                col = cmd.get("def", {}).get("ColumnDef", {}).get("colname") or ""
                key = (rel.get("schemaname"), rel.get("relname"), col) if isinstance(rel, dict) else None
                if key is not None and leaving.get(key, -1) > s.index:
                    continue  # a shadow column renamed into place, or dropped again: its name is not the result
                checks.append(ValidationCheck(
                    name=f"{shown}.{col} exists",
                    query=f"SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass({written}) "
                    f"AND attname = {literal(col)} AND NOT attisdropped",
                    expected="1", blocking=True))
        elif op.kind.startswith("validate") or "constraint" in op.kind:
            checks.append(ValidationCheck(
                name=f"constraints of {shown} validated",
                query=f"SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass({written}) "
                "AND NOT convalidated", expected="0 once every VALIDATE CONSTRAINT has run", blocking=False))
    seen: set[str] = set()
    return [c for c in checks if not (c.name in seen or seen.add(c.name))]


def _columns_leaving(statements: dict[int, Statement]) -> dict[tuple[Any, Any, str], int]:
    """(schema, table, column) → the last statement that renames the column away or drops it (read once)."""
    out: dict[tuple[Any, Any, str], int] = {}
    for i, s in statements.items():
        rel = s.fields.get("relation") if s.node in ("RenameStmt", "AlterTableStmt") else None
        if not isinstance(rel, dict):
            continue
        key = (rel.get("schemaname"), rel.get("relname"))
        if s.node == "RenameStmt" and s.fields.get("renameType") == "OBJECT_COLUMN":
            out[(*key, s.fields.get("subname", ""))] = i
        for n, c in _walk_cmds(s) if s.node == "AlterTableStmt" else ():
            if n == "AT_DropColumn":
                out[(*key, c.get("name", ""))] = i
    return out


def _index_renames(statements: dict[int, Statement]) -> list[tuple[int, Any, str, str]]:
    """(statement, schema, old name, new name) of each index rename, in order: ALTER INDEX … RENAME TO, a
    constraint's RENAME CONSTRAINT (its index follows), ADD CONSTRAINT … USING INDEX (the index takes its name)."""
    out: list[tuple[int, Any, str, str]] = []
    for i in sorted(statements):
        s = statements[i]
        rel = s.fields.get("relation")
        if not isinstance(rel, dict):
            continue
        if s.node == "RenameStmt" and s.fields.get("renameType") == "OBJECT_INDEX":
            out.append((i, rel.get("schemaname"), rel.get("relname", ""), s.fields.get("newname", "")))
        elif s.node == "RenameStmt" and s.fields.get("renameType") == "OBJECT_TABCONSTRAINT":
            out.append((i, rel.get("schemaname"), s.fields.get("subname", ""), s.fields.get("newname", "")))
        for n, c in _walk_cmds(s) if s.node == "AlterTableStmt" else ():
            con = c.get("def", {}).get("Constraint", {}) if n == "AT_AddConstraint" else {}
            if con.get("indexname") and con.get("conname"):
                out.append((i, rel.get("schemaname"), con["indexname"], con["conname"]))
    return out


def _index_name_after(renames: list[tuple[int, Any, str, str]], index: int, schema: Any, name: str) -> str:
    """The name the index built by statement ``index`` has once the migration has run."""
    for i, sch, old, new in renames:
        if i > index and old == name and (sch == schema or None in (sch, schema)):  # unqualified: search_path
            name = new
    return name


def _regclass_text(rel: dict[str, Any]) -> str:
    """A RangeVar as to_regclass() text, qualified only when the migration qualified it."""
    return literal(qualified(rel.get("schemaname") or None, rel.get("relname", "")))


def _walk_cmds(s: Statement) -> list[tuple[str, dict[str, Any]]]:
    return [(c.get("AlterTableCmd", {}).get("subtype", ""), c.get("AlterTableCmd", {}))
            for c in s.fields.get("cmds", [])]
