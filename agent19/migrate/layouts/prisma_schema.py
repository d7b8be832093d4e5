"""``schema.prisma`` from a catalog snapshot: models, enums, relations, indexes, with @map/@@map.

What PostgreSQL has and how it is written for Prisma:

* tables → ``model``; snake_case names become PascalCase models / camelCase fields with
  ``@@map``/``@map`` keeping the real names; names Prisma cannot spell are sanitized and mapped;
* column types → Prisma scalars with native types where Prisma's default differs
  (``@db.VarChar(n)``, ``@db.Timestamptz(6)``, ``@db.Uuid``…); unknown types → ``Unsupported("…")``;
* defaults → ``autoincrement()`` (serial/identity), ``now()``, literals, enum values, else
  ``dbgenerated("…")``;
* primary key → ``@id``/``@@id``; unique constraints and plain unique indexes → ``@unique``/``@@unique``;
  plain indexes → ``@@index`` (expression and partial indexes are listed as comments: Prisma has no
  syntax for them);
* foreign keys → a relation field on the referencing model and its back-relation (a list, or an
  optional single field when the FK columns are unique), named after the constraint so several
  relations between two models never clash;
* a table with no primary key or unique constraint → ``@@ignore`` (Prisma needs one).

The output targets Prisma 7 (no ``url`` in the datasource: it lives in ``prisma.config.ts``);
``prisma_major=6`` adds ``url = env("DATABASE_URL")``. Prisma's own validator is the judge (tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent19.db.models import Column, Constraint, EnumType, SchemaSnapshot, Table

_FK_ACTIONS = {"cascade": "Cascade", "restrict": "Restrict", "set_null": "SetNull", "set_default": "SetDefault"}
_SIMPLE_TYPES = {
    "integer": ("Int", None), "smallint": ("Int", "@db.SmallInt"), "bigint": ("BigInt", None),
    "boolean": ("Boolean", None), "text": ("String", None), "uuid": ("String", "@db.Uuid"),
    "double precision": ("Float", None), "real": ("Float", "@db.Real"), "numeric": ("Decimal", None),
    "jsonb": ("Json", None), "json": ("Json", "@db.Json"), "bytea": ("Bytes", None),
    "date": ("DateTime", "@db.Date"), "timestamp without time zone": ("DateTime", "@db.Timestamp(6)"),
    "timestamp with time zone": ("DateTime", "@db.Timestamptz(6)"),
    "time without time zone": ("DateTime", "@db.Time(6)"),
    "time with time zone": ("DateTime", "@db.Timetz(6)"), "inet": ("String", "@db.Inet"), "xml": ("String", "@db.Xml"),
    "character varying": ("String", "@db.VarChar"), "character": ("String", "@db.Char(1)"),
    "money": ("Decimal", "@db.Money"),
    "bit": ("String", "@db.Bit(1)"), "citext": ("String", "@db.Citext"),
}
_PARAM_TYPES = [
    (re.compile(r"^character varying\((\d+)\)$"), "String", "@db.VarChar({0})"),
    (re.compile(r"^character\((\d+)\)$"), "String", "@db.Char({0})"),
    (re.compile(r"^numeric\((\d+),(\d+)\)$"), "Decimal", "@db.Decimal({0}, {1})"),
    (re.compile(r"^timestamp\((\d)\) without time zone$"), "DateTime", "@db.Timestamp({0})"),
    (re.compile(r"^timestamp\((\d)\) with time zone$"), "DateTime", "@db.Timestamptz({0})"),
    (re.compile(r"^time\((\d)\) without time zone$"), "DateTime", "@db.Time({0})"),
    (re.compile(r"^bit varying\((\d+)\)$"), "String", "@db.VarBit({0})"),
    (re.compile(r"^bit\((\d+)\)$"), "String", "@db.Bit({0})"),
]
_PRISMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED = {"String", "Int", "BigInt", "Float", "Decimal", "Boolean", "DateTime", "Json", "Bytes", "Unsupported",
             "model", "enum", "type", "datasource", "generator"}


def pascal(name: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    out = "".join(p[:1].upper() + p[1:] for p in parts) or "X"
    if not out[0].isalpha():
        out = "T" + out
    return out + "_" if out in _RESERVED else out


def camel(name: str) -> str:
    p = pascal(name)
    return p[:1].lower() + p[1:]


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class _Model:
    table: Table
    name: str
    fields: dict[str, str] = field(default_factory=dict)  # column → field name
    lines: list[str] = field(default_factory=list)
    block: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def unique_name(self, wanted: str) -> str:
        name, n = wanted, 2
        while name in self.used:
            name, n = f"{wanted}{n}", n + 1
        self.used.add(name)
        return name


def _type(col: Column, enums: dict[str, str]) -> tuple[str, str | None, bool]:
    """(prisma type, native attribute, is_list)."""
    t = col.type
    is_list = t.endswith("[]")
    base = t[:-2] if is_list else t
    bare = base.rsplit(".", 1)[-1].strip('"')
    if bare in enums:
        return enums[bare], None, is_list
    if base in _SIMPLE_TYPES:
        scalar, native = _SIMPLE_TYPES[base]
        return scalar, native, is_list
    for pattern, scalar, native in _PARAM_TYPES:
        m = pattern.match(base)
        if m:
            return scalar, native.format(*m.groups()), is_list
    return f"Unsupported({_string(t)})", None, is_list


def _default(col: Column, scalar: str, enum_values: dict[str, dict[str, str]]) -> str | None:
    d = col.default
    if col.identity or (d and d.startswith("nextval(")):
        return "@default(autoincrement())"
    if d is None:
        return None
    if d in ("now()", "CURRENT_TIMESTAMP", "transaction_timestamp()"):
        return "@default(now())"
    m = re.fullmatch(r"'((?:[^']|'')*)'::([\w\s\".]+)", d)
    if m:
        value = m.group(1).replace("''", "'")
        if scalar in enum_values and value in enum_values[scalar]:
            return f"@default({enum_values[scalar][value]})"
        if scalar == "String":
            return f"@default({_string(value)})"
    if scalar in ("Int", "BigInt", "Float", "Decimal") and re.fullmatch(r"-?\d+(\.\d+)?", d.strip("()")):
        return f"@default({d.strip('()')})"
    if scalar == "Boolean" and d in ("true", "false"):
        return f"@default({d})"
    return f"@default(dbgenerated({_string(d)}))"


def _index_columns(cols: list[str]) -> list[str] | None:
    """Plain column names, or None when the index has an expression."""
    out = []
    for c in cols:
        name = c[1:-1].replace('""', '"') if c.startswith('"') and c.endswith('"') else c
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$ ]*", name) and not c.startswith('"'):
            return None
        out.append(name)
    return out


def schema_prisma(snap: SchemaSnapshot, *, schema: str = "public", prisma_major: int = 7) -> str:
    """The ``schema.prisma`` for the tables and enums of ``schema`` in ``snap``."""
    enum_types = [e for e in snap.enums if e.schema_name == schema]
    enum_names: dict[str, str] = {}
    enum_values: dict[str, dict[str, str]] = {}
    taken: set[str] = set()
    for e in enum_types:
        enum_names[e.name] = _fresh(pascal(e.name), taken)
    tables = [t for t in snap.tables if t.schema_name == schema and t.kind != "foreign_table" and not t.partition_of]
    models = {t.name: _Model(t, _fresh(pascal(t.name), taken)) for t in tables}
    blocks = [_header(prisma_major)]
    enum_blocks = []
    for e in enum_types:
        block, values = _enum(e, enum_names[e.name])
        enum_values[enum_names[e.name]] = values
        enum_blocks.append(block)
    for m in models.values():
        _scalars(m, enum_names, enum_values)
    for m in models.values():
        _relations(m, models, schema)
    for m in models.values():
        _model_block(m)
        blocks.append("\n".join([f"model {m.name} {{", *m.lines, *([""] + m.block if m.block else []), "}"]))
    return "\n\n".join(blocks + enum_blocks) + "\n"


def _fresh(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}{n}", n + 1
    taken.add(out)
    return out


def _header(prisma_major: int) -> str:
    ds = ['datasource db {', '  provider = "postgresql"']
    if prisma_major < 7:
        ds.append('  url      = env("DATABASE_URL")')
    ds.append("}")
    return 'generator client {\n  provider = "prisma-client-js"\n}\n\n' + "\n".join(ds)


def _enum(e: EnumType, name: str) -> tuple[str, dict[str, str]]:
    lines, values, used = [f"enum {name} {{"], {}, set()
    for v in e.values:
        ident = v if _PRISMA_NAME.match(v) else _fresh(re.sub(r"\W+", "_", v).strip("_") or "value", used)
        if not ident[0].isalpha():
            ident = "v_" + ident
        used.add(ident)
        values[v] = ident
        lines.append(f"  {ident}" + ("" if ident == v else f" @map({_string(v)})"))
    if name != e.name:
        lines.append(f"\n  @@map({_string(e.name)})")
    lines.append("}")
    return "\n".join(lines), values


def _pk(t: Table) -> Constraint | None:
    return next((c for c in t.constraints if c.type == "primary_key"), None)


def _unique_sets(t: Table) -> list[tuple[list[str], str]]:
    sets: list[tuple[list[str], str]] = []
    for c in t.constraints:
        if c.type == "unique":
            sets.append((c.columns, c.name))
    backing = {c.index for c in t.constraints if c.index}
    for ix in t.indexes:
        if ix.unique and not ix.primary and not ix.partial and ix.valid and ix.name not in backing:
            cols = _index_columns(ix.columns)
            if cols:
                sets.append((cols, ix.name))
    return sets


def _scalars(m: _Model, enums: dict[str, str], enum_values: dict[str, dict[str, str]]) -> None:
    t = m.table
    pk = _pk(t)
    single_unique = {cols[0] for cols, _ in _unique_sets(t) if len(cols) == 1}
    for col in t.columns:
        fname = m.unique_name(camel(col.name))
        m.fields[col.name] = fname
        scalar, native, is_list = _type(col, enums)
        optional = "" if is_list or not col.nullable else "?"
        attrs = []
        if pk and pk.columns == [col.name]:
            attrs.append("@id")
        elif col.name in single_unique:
            attrs.append("@unique")
        default = _default(col, scalar, enum_values)
        if default:
            attrs.append(default)
        if fname != col.name:
            attrs.append(f"@map({_string(col.name)})")
        if native:
            attrs.append(native)
        m.lines.append(f"  {fname} {scalar}{'[]' if is_list else ''}{optional}" + (" " + " ".join(attrs) if attrs
                                                                                   else ""))


def _relations(m: _Model, models: dict[str, _Model], schema: str) -> None:
    t = m.table
    for fk in (c for c in t.constraints if c.type == "foreign_key" and c.references_table):
        ref_schema, _, ref_name = fk.references_table.rpartition(".")  # type: ignore[union-attr]
        target = models.get(ref_name) if ref_schema == schema else None
        if target is None or not all(c in m.fields for c in fk.columns):
            m.block.append(f"// foreign key {fk.name} references {fk.references_table}, outside this schema")
            continue
        optional = any(col.nullable for col in t.columns if col.name in fk.columns)
        base = re.sub(r"_?(id|Id|ID)$", "", fk.columns[0]) if len(fk.columns) == 1 else ref_name
        fname = m.unique_name(camel(base or ref_name) if camel(base or ref_name) not in m.used else camel(base) + "Rel")
        rel = _string(fk.name)
        fields = ", ".join(m.fields[c] for c in fk.columns)
        refs = ", ".join(target.fields.get(c, camel(c)) for c in fk.references_columns)
        actions = ""
        if fk.on_delete in _FK_ACTIONS:
            actions += f", onDelete: {_FK_ACTIONS[fk.on_delete]}"
        if fk.on_update in _FK_ACTIONS:
            actions += f", onUpdate: {_FK_ACTIONS[fk.on_update]}"
        m.lines.append(f"  {fname} {target.name}{'?' if optional else ''} @relation({rel}, fields: [{fields}], "
                       f"references: [{refs}]{actions}, map: {_string(fk.name)})")
        one_to_one = any(sorted(cols) == sorted(fk.columns) for cols, _ in _unique_sets(t)) or (
            (pk := _pk(t)) is not None and sorted(pk.columns) == sorted(fk.columns))
        back = target.unique_name(camel(t.name) if target is not m else camel(t.name) + "Children")
        target.lines.append(f"  {back} {m.name}{'?' if one_to_one else '[]'} @relation({rel})")


def _model_block(m: _Model) -> None:
    t = m.table
    f = m.fields
    pk = _pk(t)
    uniques = _unique_sets(t)
    if pk and len(pk.columns) > 1:
        m.block.append(f"  @@id([{', '.join(f[c] for c in pk.columns)}], map: {_string(pk.name)})")
    for cols, name in uniques:
        if len(cols) > 1 and all(c in f for c in cols):
            m.block.append(f"  @@unique([{', '.join(f[c] for c in cols)}], map: {_string(name)})")
    for ix in t.indexes:
        if ix.unique or ix.primary:
            continue
        cols = _index_columns(ix.columns)
        if ix.partial or cols is None or not all(c in f for c in cols) or not ix.valid:
            m.block.append(f"  // not expressible in Prisma: {ix.definition}")
            continue
        kind = "" if ix.method == "btree" else f", type: {ix.method.capitalize()}"
        m.block.append(f"  @@index([{', '.join(f[c] for c in cols)}], map: {_string(ix.name)}{kind})")
    if m.name != t.name:
        m.block.append(f"  @@map({_string(t.name)})")
    if pk is None and not uniques:
        m.block.append("  @@ignore")
        m.lines.insert(0, "  /// no primary key or unique constraint: Prisma Client cannot use this table")
