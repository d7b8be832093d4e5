"""The catalog snapshot: one accurate description of what is in a database.

These models are the engine's view of a schema; migrations, the index advisor and the
safety checks all read them. Sizes are bytes; row counts are the planner's estimates
(``pg_class.reltuples``; ``None`` when the table was never analyzed or vacuumed).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, PrivateAttr

TableKind = Literal["table", "partitioned_table", "foreign_table"]
ConstraintType = Literal["primary_key", "unique", "check", "foreign_key", "exclusion", "not_null", "trigger"]
FkAction = Literal["no_action", "restrict", "cascade", "set_null", "set_default"]


class Extension(BaseModel):
    name: str
    installed_version: str | None = None
    default_version: str | None = None


class Column(BaseModel):
    name: str
    position: int
    type: str = Field(description="type with typmod, as format_type() prints it, e.g. character varying(40)")
    nullable: bool
    default: str | None = None
    default_volatile: bool | None = Field(
        default=None, description="whether the default calls a volatile function (a rewrite on ADD COLUMN)"
    )
    identity: Literal["always", "by_default"] | None = None
    generated: Literal["stored", "virtual"] | None = None
    collation: str | None = None


class Constraint(BaseModel):
    name: str
    type: ConstraintType
    columns: list[str] = []
    definition: str
    validated: bool = True
    deferrable: bool = False
    index: str | None = Field(default=None, description="the index backing a PK/unique/exclusion constraint")
    references_table: str | None = Field(default=None, description="schema-qualified referenced table (FK)")
    references_columns: list[str] = []
    on_update: FkAction | None = None
    on_delete: FkAction | None = None


class Index(BaseModel):
    name: str
    table: str = Field(description="schema-qualified table name")
    definition: str
    method: str
    columns: list[str] = Field(default=[], description="key columns as SQL (quoted where needed); expressions appear "
                               "as their text")
    column_names: list[str | None] = Field(default=[], description="key columns as the catalog stores them (raw, "
                                           "unquoted); null for an expression")
    unique: bool
    primary: bool
    partial: bool
    predicate: str | None = None
    valid: bool
    ready: bool = True
    size_bytes: int
    scans: int | None = Field(default=None, description="idx_scan since statistics were last reset")

    def key_names(self) -> list[str]:
        """The key columns as raw names (``user``, ``Parent Id``), to compare with names from a statement or the
        catalog; an expression stays its text. ``columns`` is SQL (``"user"``) and equals no raw name."""
        if len(self.column_names) == len(self.columns):
            return [n if n is not None else c for n, c in zip(self.column_names, self.columns, strict=True)]
        return list(self.columns)


class Trigger(BaseModel):
    name: str
    definition: str
    enabled: bool
    function: str


class Table(BaseModel):
    schema_name: str = Field(alias="schema")
    name: str
    kind: TableKind
    persistence: Literal["permanent", "unlogged", "temporary"]
    row_estimate: int | None
    heap_bytes: int
    index_bytes: int
    total_bytes: int
    partition_of: str | None = None
    partition_key: str | None = None
    columns: list[Column] = []
    constraints: list[Constraint] = []
    indexes: list[Index] = []
    triggers: list[Trigger] = []
    comment: str | None = None

    model_config = {"populate_by_name": True}

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted when a part holds a dot (``"public"."we.ird"``): read back with split_name."""
        from agent19.migrate.patterns.sqlnames import relation_key

        return relation_key(self.schema_name, self.name)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


class View(BaseModel):
    schema_name: str = Field(alias="schema")
    name: str
    materialized: bool
    definition: str
    depends_on: list[str] = Field(default=[], description="schema-qualified relations the view reads")
    populated: bool = True
    indexes: list[Index] = []

    model_config = {"populate_by_name": True}


class Sequence(BaseModel):
    schema_name: str = Field(alias="schema")
    name: str
    data_type: str
    last_value: int | None
    max_value: int
    increment: int
    owned_by: str | None = Field(default=None, description="table.column that owns it (serial/identity)")

    model_config = {"populate_by_name": True}


class EnumType(BaseModel):
    schema_name: str = Field(alias="schema")
    name: str
    values: list[str]

    model_config = {"populate_by_name": True}


class _Index:
    """A snapshot's relations by name, for the lookups planning and linting make (a few hundred per plan, each
    a dict lookup however many tables the database has). Holds the lists it was built from, to tell when they
    were replaced or changed length (:meth:`describes`)."""

    __slots__ = ("lists", "sizes", "tables", "indexes", "relations", "_joined")

    def __init__(self, snap: SchemaSnapshot) -> None:
        self.lists = (snap.tables, snap.views, snap.sequences)
        self.sizes = tuple(len(x) for x in self.lists)
        self.tables: dict[str, list[Table]] = {}
        for t in snap.tables:  # in the snapshot's order: the first of two same-named tables is found first
            self.tables.setdefault(t.name, []).append(t)
        self.indexes: dict[tuple[str, str], tuple[Table, Index]] = {}
        for t in reversed(snap.tables):  # the first table holding an index so named wins, as a scan would find
            self.indexes.update({(t.schema_name, i.name): (t, i) for i in t.indexes})
        holders: list[Table | View] = [*snap.tables, *snap.views]
        self.relations = {(r.schema_name, r.name) for r in [*holders, *snap.sequences]}
        self.relations |= {(r.schema_name, i.name) for r in holders for i in r.indexes}
        self._joined: dict[str, list[Table]] | None = None

    def describes(self, snap: SchemaSnapshot) -> bool:
        lists = (snap.tables, snap.views, snap.sequences)
        same = all(a is b for a, b in zip(lists, self.lists, strict=True))
        return same and self.sizes == tuple(len(x) for x in lists)

    def joined(self) -> dict[str, list[Table]]:
        """Tables by their raw parts joined with a dot (``s.a.b``), built on the first such lookup."""
        if self._joined is None:
            joined: dict[str, list[Table]] = {}  # filled, then published whole (threads may share the snapshot)
            for t in self.lists[0]:
                joined.setdefault(f"{t.schema_name}.{t.name}", []).append(t)
            self._joined = joined
        return self._joined


class SchemaSnapshot(BaseModel):
    """Everything agent19 knows about a database's schema at one moment."""

    server_version: int = Field(description="server_version_num, e.g. 160002")
    server_version_text: str
    database: str
    extensions: list[Extension] = Field(default=[], description="installed extensions")
    available_extensions: list[str] = Field(default=[], description="extensions that could be installed")
    schemas: list[str]
    tables: list[Table] = []
    views: list[View] = []
    sequences: list[Sequence] = []
    enums: list[EnumType] = []
    filtered: bool = Field(default=False, description="true when limited to one schema or table")
    search_path: list[str] | None = Field(
        default=None, description="the reading session's effective search_path (current_schemas(false), system "
        "schemas left out): where its unqualified names are looked up, in order; null when not read")
    role: str | None = Field(default=None, description="the reading session's current_user (search_path's $user)")
    usable_schemas: list[str] | None = Field(
        default=None, description="the schemas the reading session's login has USAGE on: a search_path entry "
        "that is not among them is skipped by the server (for lookups and for a CREATE's target); null when not read")
    _index: _Index | None = PrivateAttr(default=None)

    def _names(self) -> _Index:
        """The snapshot's names, gathered once and gathered again when a list of relations is replaced or grows or
        shrinks (a copy with other lists gathers its own): the lists are read, never edited in place, by the engine
        (a snapshot cached for several calls is shared by them, :mod:`agent19.db.catalog_cache`)."""
        index = self._index
        if index is None or not index.describes(self):
            index = self._index = _Index(self)
        return index

    def has_relation(self, schema: str, name: str) -> bool:
        """Whether ``schema`` holds a relation named ``name``: a table, view, materialized view, sequence or index
        (the names a CREATE checks, and those an unqualified name is looked up among)."""
        return (schema, name) in self._names().relations

    def tables_named(self, name: str) -> list[Table]:
        """The tables named ``name`` (a raw name, unqualified), in every schema, in the snapshot's order."""
        return list(self._names().tables.get(name, ()))

    def table_index(self, schema: str, name: str) -> tuple[Table, Index] | None:
        """The table index ``schema.name`` is on, and the index (views' indexes are not looked up here)."""
        return self._names().indexes.get((schema, name))

    def table(self, name: str) -> Table | None:
        """Find a table by ``name`` or ``schema.name`` (unqualified: the first schema of :attr:`search_path` that
        holds it, public first when that is not known), read as
        :func:`~agent19.migrate.patterns.sqlnames.split_name` reads it (``"public"."we.ird"``, ``"my.schema".t``:
        the dot inside quotes stays in its part); a raw ``s.a.b`` is found when exactly one table's parts join to
        it. A lookup by name, not a scan: the tables are indexed once per snapshot."""
        from agent19.migrate.patterns.sqlnames import split_name

        schema, rel = split_name(name)
        index = self._names()
        named = index.tables.get(rel, ())
        matches = [t for t in named if t.schema_name == schema] if schema else list(named)
        if not matches and '"' not in name and name.count(".") > 1:
            joined = index.joined().get(name, ())
            matches = list(joined) if len(joined) == 1 else []
        if not schema and len(matches) > 1:
            path = self.search_path or ["public"]
            matches = sorted(matches, key=lambda t: path.index(t.schema_name) if t.schema_name in path else len(path))
        return matches[0] if matches else None

    @property
    def major_version(self) -> int:
        return self.server_version // 10000

