"""Choose the knowledge-table form of one ``ALTER TABLE`` sub-command (and its inverse SQL).

Everything here reads pglast's JSON parse tree; the decisions that depend on the catalog or on
earlier statements of the migration (column types, validated ``CHECK (col IS NOT NULL)``,
partition-bound CHECKs) read :class:`~agent19.migrate.classification.state.Context`.
"""

from __future__ import annotations

from typing import Any

from agent19.migrate.classification.knowledge import (
    ColumnType,
    default_volatility,
    parse_format_type,
    rewrite_free_change,
)
from agent19.migrate.classification.state import Context, Decision, check_facts, if_not_exists, range_name
from agent19.migrate.patterns.sqlnames import ident, qname
from agent19.sqltree import walk

A = "alter_table."
SERIAL_TYPES = {"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"}
SUE_RELOPTIONS = {
    "fillfactor", "toast_tuple_target", "parallel_workers", "vacuum_index_cleanup", "vacuum_truncate",
    "log_autovacuum_min_duration",
}
TRIGGER_FLIP = {
    "AT_EnableTrig": "DISABLE TRIGGER", "AT_DisableTrig": "ENABLE TRIGGER", "AT_EnableTrigAll": "DISABLE TRIGGER ALL",
    "AT_DisableTrigAll": "ENABLE TRIGGER ALL", "AT_EnableTrigUser": "DISABLE TRIGGER USER",
    "AT_DisableTrigUser": "ENABLE TRIGGER USER", "AT_EnableAlwaysTrig": None, "AT_EnableReplicaTrig": None,
}
SIMPLE = {
    "AT_SetStatistics": "set_statistics", "AT_SetOptions": "set_attoptions", "AT_ResetOptions": "set_attoptions",
    "AT_SetStorage": "set_storage", "AT_SetCompression": "set_storage", "AT_AddIdentity": "add_identity",
    "AT_AlterConstraint": "alter_constraint", "AT_SetLogged": "set_logged", "AT_SetUnLogged": "set_logged",
    "AT_ClusterOn": "cluster_on", "AT_DropCluster": "cluster_on", "AT_ReplicaIdentity": "replica_identity",
    "AT_EnableRowSecurity": "row_security", "AT_DisableRowSecurity": "row_security",
    "AT_ForceRowSecurity": "row_security", "AT_NoForceRowSecurity": "row_security", "AT_ChangeOwner": "owner",
}


def type_of(type_name: dict[str, Any]) -> ColumnType:
    """A parse tree ``TypeName`` → :class:`ColumnType` (``pg_catalog.varchar`` + typmods (40))."""
    names = [n.get("String", {}).get("sval", "") for n in type_name.get("names", [])]
    base = names[-1] if names else ""
    mods = tuple(
        int(m["A_Const"]["ival"].get("ival", 0)) for m in type_name.get("typmods", []) if "ival" in m.get("A_Const", {})
    )
    parsed, array = parse_format_type(base), bool(type_name.get("arrayBounds"))
    if not mods and not array and not parsed.mods and not parsed.array:
        return parsed  # the same value (immutable): a plain type name, as most are
    return ColumnType(parsed.base, mods, array)


def _constraints(coldef: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["Constraint"] for c in coldef.get("constraints", []) if "Constraint" in c]


def decide_alter(cmd: dict[str, Any], table: str, ctx: Context) -> Decision:
    """The form of one ``AlterTableCmd`` on ``table``, its relations, notes and inverse."""
    sub = cmd.get("subtype", "")
    col = cmd.get("name")
    alter = f"ALTER TABLE {qname(table)}"  # written first: a name that cannot be written fails every sub-command
    if sub == "AT_AddColumn":
        return _add_column(cmd["def"]["ColumnDef"], table, ctx, bool(cmd.get("missing_ok")))
    if sub == "AT_DropColumn":
        ctx.state.forget_column(table, col)
        if (table, col) in ctx.state.added_columns:
            ctx.state.added_columns.discard((table, col))
            return Decision(A + "drop_column", [table], risk="low", created_here=True, notes=[
                f"column {col} was added earlier in this migration: dropping it loses no data that predates the "
                "migration and no running client uses it"])
        return Decision(A + "drop_column", [table], notes=[f"column {col} and its data are dropped"])
    if sub == "AT_SetNotNull":
        return _set_not_null(table, col, ctx)
    if sub == "AT_DropNotNull":
        return Decision(A + "drop_not_null", [table], inverse=f"{alter} ALTER COLUMN {ident(col)} SET NOT NULL")
    if sub == "AT_ColumnDefault":
        return _default(cmd, table, col, ctx)
    if sub == "AT_AlterColumnType":
        return _alter_type(cmd, table, col, ctx)
    if sub == "AT_AddConstraint":
        return _add_constraint(cmd["def"]["Constraint"], table, ctx)
    if sub == "AT_ValidateConstraint":
        ctx.state.validate(table, col)
        return Decision(A + "validate_constraint", [table], inverse=None, reversible=True,
                        notes=["validating changes nothing to undo"])
    if sub == "AT_DropConstraint":
        return _drop_constraint(table, col, ctx)
    if sub in TRIGGER_FLIP:
        flip = TRIGGER_FLIP[sub]
        trig = f" {ident(col)}" if col and flip and not flip.endswith(("ALL", "USER")) else ""
        inverse = f"{alter} {flip}{trig}" if flip else None
        return Decision(A + "trigger_state", [table], inverse=inverse, reversible=flip is not None)
    if sub in ("AT_SetRelOptions", "AT_ResetRelOptions"):
        names = {d["DefElem"]["defname"] for d in cmd.get("def", {}).get("List", {}).get("items", []) if "DefElem" in d}
        weak = all(n in SUE_RELOPTIONS or n.startswith("autovacuum_") for n in names)
        return Decision(A + ("set_reloptions" if weak else "set_reloptions.other"), [table],
                        notes=[f"storage parameters: {', '.join(sorted(names))}"])
    if sub == "AT_AttachPartition":
        return _attach(cmd["def"]["PartitionCmd"], table, ctx)
    if sub == "AT_DetachPartition":
        part = cmd["def"]["PartitionCmd"]
        name = range_name(part["name"])
        conc = bool(part.get("concurrent"))
        return Decision(A + ("detach_partition.concurrently" if conc else "detach_partition"), [table], [name],
                        reversible=False, notes=["re-attaching needs the partition bound (ATTACH PARTITION ... FOR "
                                                 "VALUES ...)"])
    if sub in SIMPLE:
        kind = SIMPLE[sub]
        inverse = None
        if sub == "AT_SetLogged":
            inverse = f"{alter} SET UNLOGGED"
        elif sub == "AT_SetUnLogged":
            inverse = f"{alter} SET LOGGED"
        return Decision(A + kind, [table], inverse=inverse, reversible=inverse is not None or kind in (
            "set_statistics", "set_attoptions", "cluster_on"))
    return Decision(A + "other", [table], notes=[f"sub-command {sub} is not in the knowledge table"],
                    reversible=False)


def _add_column(coldef: dict[str, Any], table: str, ctx: Context, if_missing: bool = False) -> Decision:
    col = coldef.get("colname", "")
    ctype = type_of(coldef.get("typeName", {}))
    cons = _constraints(coldef)
    types = {c.get("contype") for c in cons}
    existed = None if ctx.catalog is None else ctx.catalog_column(table, col) is not None
    if not (if_missing and existed):  # ADD COLUMN IF NOT EXISTS of a live column adds nothing: not ours to drop
        ctx.state.add_column(table, col, ctype)
        ctx.state.added_columns.add((table, col))
    inverse = f"ALTER TABLE {qname(table)} DROP COLUMN {ident(col)}"
    names = [n.get("String", {}).get("sval", "") for n in coldef.get("typeName", {}).get("names", [])]
    default = next((c.get("raw_expr") for c in cons if c.get("contype") == "CONSTR_DEFAULT"), None)
    notes: list[str] = []
    refs = [range_name(c["pktable"]) for c in cons if c.get("contype") == "CONSTR_FOREIGN" and "pktable" in c]
    if "CONSTR_IDENTITY" in types:
        form = "add_column.identity"
    elif names and names[-1] in SERIAL_TYPES:
        form = "add_column.serial"
    elif "CONSTR_GENERATED" in types:
        form = "add_column.generated_stored"
    else:
        volatile = False
        if default is not None:
            funcs = {fields["funcname"][-1]["String"]["sval"] for node, fields in walk(default) if node == "FuncCall"}
            volatile, why = default_volatility(funcs)
            notes.append(why)
        if volatile:
            form = "add_column.volatile_default"
        elif types & {"CONSTR_UNIQUE", "CONSTR_PRIMARY"}:
            form = "add_column.unique"
        elif "CONSTR_NOTNULL" in types and default is None:
            form = "add_column.not_null_no_default"
        elif "CONSTR_CHECK" in types:
            form = "add_column.check"
        elif refs:
            form = "add_column.foreign_key"
        elif default is not None:
            form = "add_column.not_null_default" if "CONSTR_NOTNULL" in types else "add_column.default"
        else:
            form = "add_column"
    if if_missing:
        return Decision(A + form, [table], refs, **if_not_exists(f"column {col} of {table}", existed, inverse, notes))
    return Decision(A + form, [table], refs, notes=notes, inverse=inverse)


def _set_not_null(table: str, col: str, ctx: Context) -> Decision:
    inverse = f"ALTER TABLE {qname(table)} ALTER COLUMN {ident(col)} DROP NOT NULL"
    proven, why = ctx.not_null_proven(table, col)
    if proven:
        return Decision(A + "set_not_null.proven_by_check", [table], notes=[why], inverse=inverse)
    return Decision(A + "set_not_null", [table], notes=[why] if why else [], inverse=inverse)


def _default(cmd: dict[str, Any], table: str, col: str, ctx: Context) -> Decision:
    alter = f"ALTER TABLE {qname(table)} ALTER COLUMN {ident(col)}"
    old = ctx.catalog_column(table, col)
    previous = old.default if old else None
    if cmd.get("def") is not None:
        inverse = f"{alter} SET DEFAULT {previous}" if previous else f"{alter} DROP DEFAULT"
        if old is None and not ctx.state.has_column(table, col):
            inverse = f"{alter} DROP DEFAULT"
        return Decision(A + "set_default", [table], inverse=inverse,
                        notes=["the inverse drops the default; the previous one is unknown without a catalog"]
                        if old is None else [])
    if previous:
        return Decision(A + "drop_default", [table], inverse=f"{alter} SET DEFAULT {previous}")
    return Decision(A + "drop_default", [table], reversible=False,
                    notes=["the previous default is unknown without a catalog: cannot generate the inverse"])


def _alter_type(cmd: dict[str, Any], table: str, col: str, ctx: Context) -> Decision:
    coldef = cmd["def"]["ColumnDef"]
    new = type_of(coldef.get("typeName", {}))
    old = ctx.column_type(table, col)
    alter = f"ALTER TABLE {qname(table)} ALTER COLUMN {ident(col)}"
    ctx.state.add_column(table, col, new)
    if old is None:
        return Decision(A + "alter_column_type.unknown", [table], reversible=False, notes=[
            f"the current type of {table}.{col} is unknown (no catalog, not created earlier in this migration): "
            "assumed to rewrite; connect a database to know"])
    inverse = f"{alter} TYPE {old}"
    using = coldef.get("raw_default")
    plain_using = using is None or using.get("ColumnRef", {}).get("fields", [{}])[-1].get("String", {}).get(
        "sval") == col
    if not plain_using:
        return Decision(A + "alter_column_type", [table], inverse=inverse,
                        notes=[f"{old} -> {new} with a USING expression: the table is rewritten"])
    why = rewrite_free_change(old, new, ctx.pg_major, ctx.session_utc)
    checks = ctx.checks_reading(table, col) if why else []
    if checks:
        return Decision(A + "alter_column_type.coercible_with_check", [table], inverse=inverse, notes=[
            f"{old} -> {new}: {why}; but the validated CHECK constraint(s) {', '.join(checks)} read {col} and are "
            "re-checked against every row while the AccessExclusiveLock is held"])
    if {old.base, new.base} == {"timestamp", "timestamptz"} and old.array == new.array:
        if why:
            return Decision(A + "alter_column_type.timestamptz_utc", [table], inverse=inverse, notes=[why])
        if ctx.pg_major >= 12 and not ctx.session_utc:
            return Decision(A + "alter_column_type.timestamptz_non_utc", [table], inverse=inverse,
                            notes=[f"{old} -> {new} with a non-UTC session time zone: rewrite"])
        if ctx.pg_major < 12:
            return Decision(A + "alter_column_type.timestamptz_utc", [table], inverse=inverse,
                            notes=[f"{old} -> {new} before PostgreSQL 12: rewrite"])
    if why:
        return Decision(A + "alter_column_type.coercible", [table], inverse=inverse, notes=[f"{old} -> {new}: {why}"])
    return Decision(A + "alter_column_type", [table], inverse=inverse,
                    notes=[f"{old} -> {new} is not binary-coercible: rewrite (the inverse rewrites too)"])


def _add_constraint(con: dict[str, Any], table: str, ctx: Context) -> Decision:
    contype = con.get("contype")
    name = con.get("conname")
    not_valid = bool(con.get("skip_validation"))
    # IF EXISTS: the rollback can be run again after a partial run (the name was free, or the ADD would have failed)
    inverse = f"ALTER TABLE {qname(table)} DROP CONSTRAINT IF EXISTS {ident(name)}" if name else None
    notes = [] if name else ["unnamed constraint: the server names it, so the inverse cannot be generated"]
    live = ctx.table(table)
    if name and live and any(c.name == name for c in live.constraints) and (table, name) not in \
            ctx.state.dropped_constraints:  # the ADD fails: its inverse would drop the constraint that predates it
        inverse = None
        notes.append(f"{name} exists already on {table}: this ADD CONSTRAINT fails, and the rollback leaves the "
                     "constraint that predates the migration alone")
    reversible = inverse is not None or bool(name)
    if contype == "CONSTR_CHECK":
        facts = check_facts(con.get("raw_expr", {}))
        columns = {f["fields"][-1].get("String", {}).get("sval", "") for node, f in walk(con.get("raw_expr", {}))
                   if node == "ColumnRef" and f.get("fields")}
        ctx.state.add_check(table, name, facts, validated=not not_valid, columns=columns)
        return Decision(A + ("add_check.not_valid" if not_valid else "add_check"), [table], notes=notes,
                        inverse=inverse, reversible=reversible)
    if contype == "CONSTR_FOREIGN":
        ref = range_name(con["pktable"])
        ctx.state.add_foreign_key(table, name, ref)
        return Decision(A + ("add_foreign_key.not_valid" if not_valid else "add_foreign_key"), [table], [ref],
                        notes=notes, inverse=inverse, reversible=reversible)
    if contype in ("CONSTR_UNIQUE", "CONSTR_PRIMARY"):
        if con.get("indexname"):
            if contype == "CONSTR_PRIMARY":
                notes.append("PRIMARY KEY USING INDEX also sets NOT NULL on its columns (a scan if any is nullable)")
            return Decision(A + "add_unique.using_index", [table], notes=notes, inverse=inverse,
                            reversible=reversible)
        form = "add_primary_key" if contype == "CONSTR_PRIMARY" else "add_unique"
        return Decision(A + form, [table], notes=notes, inverse=inverse, reversible=reversible)
    if contype == "CONSTR_EXCLUSION":
        return Decision(A + "add_exclusion", [table], notes=notes, inverse=inverse, reversible=reversible)
    return Decision(A + "other", [table], notes=[f"constraint type {contype}"], reversible=False)


def _drop_constraint(table: str, name: str, ctx: Context) -> Decision:
    ctx.state.dropped_constraints.add((table, name))
    ref, definition = ctx.constraint_info(table, name)
    inverse = f"ALTER TABLE {qname(table)} ADD CONSTRAINT {ident(name)} {definition}" if definition else None
    notes = [] if inverse else ["the constraint's definition is unknown without a catalog: no inverse"]
    if ref:
        return Decision(A + "drop_constraint.foreign_key", [table], [ref], notes=notes, inverse=inverse,
                        reversible=inverse is not None)
    if ctx.catalog is None and not ctx.state.knows_constraint(table, name):
        notes.append("without a catalog it is unknown whether this is a foreign key (which would also take "
                     "AccessExclusiveLock on the referenced table)")
    return Decision(A + "drop_constraint", [table], notes=notes, inverse=inverse, reversible=inverse is not None)


def _attach(part: dict[str, Any], table: str, ctx: Context) -> Decision:
    name = range_name(part["name"])
    inverse = f"ALTER TABLE {qname(table)} DETACH PARTITION {qname(name)}"
    proven, why = ctx.partition_bound_proven(table, name, part.get("bound", {}))
    form = "attach_partition.proven_by_check" if proven else "attach_partition"
    return Decision(A + form, [table], [name], notes=[why], inverse=inverse)
