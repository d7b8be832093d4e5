"""What classification knows while it walks a migration: the catalog, and what earlier statements did.

:class:`MigrationState` is the state carried from statement to statement of one migration:
tables created earlier (operations on them are low risk), columns added or retyped earlier
(their types decide whether a later type change rewrites), CHECK constraints added earlier
(a validated ``CHECK (col IS NOT NULL)`` lets ``SET NOT NULL`` skip its scan), foreign keys,
the ``lock_timeout`` set by ``SET lock_timeout`` (``None`` until one is seen; ``RESET`` or
``SET … TO DEFAULT`` makes it ``"default"``), and whether an explicit ``BEGIN`` is open.
Lint rules read the latter two from each :class:`~agent19.migrate.model.Operation`
(``lock_timeout``, ``explicit_transaction``).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pglast.parser import ParseError

from agent19.migrate.classification.knowledge import ColumnType, parse_format_type
from agent19.migrate.model import Risk
from agent19.migrate.patterns.sqlnames import relation_key, split_name
from agent19.sqltree import parse_json, walk

if TYPE_CHECKING:  # annotations only: the catalog models load where a catalog is read
    from agent19.db.models import Column, SchemaSnapshot, Table

DEFAULT_SCHEMA = "public"
TEMP = "pg_temp"
"""the session's temporary schema, as a migration names it (the server's ``pg_temp_N``)"""
_SESSION: ContextVar[Context | None] = ContextVar("agent19_classified_session", default=None)


def default_schema(name: str | None = None, *, create: bool = False) -> str:
    """The schema the unqualified name ``name`` means at this point of the migration being classified, as the
    server resolves it: the first schema of the session's search_path (:meth:`Context.search_path`) that holds a
    relation so named (in the catalog or made earlier in the migration), the session's temporary tables first
    (``pg_temp``, unless the path lists it later); for a CREATE (``create``), or a name held nowhere, the first
    schema of the path. Outside a classification, and offline until a ``SET search_path``: ``public``."""
    ctx = _SESSION.get()
    if ctx is None:
        return DEFAULT_SCHEMA
    path = ctx.search_path()
    if name and not create:
        state = ctx.state
        if TEMP not in path and state.created and (temp := relation_key(TEMP, name)) in state.created and \
                temp not in state.dropped:  # the catalog holds no temporary table: made here or not at all
            return TEMP
        if len(path) > 1:
            for schema in path:
                if ctx.holds(schema, name):
                    return schema
    return path[0] if path else DEFAULT_SCHEMA


class one_session:  # noqa: N801 - a context manager used as a function; a class: entered for every statement linted
    """Classify statements of the migration ``ctx`` describes: unqualified names are resolved on its session's
    search_path (:func:`default_schema`)."""

    __slots__ = ("ctx", "token")
    token: Token[Context | None]

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        self.token = _SESSION.set(self.ctx)

    def __exit__(self, *exc: object) -> None:
        _SESSION.reset(self.token)


def range_name(rv: dict[str, Any], *, create: bool = False) -> str:
    """A ``RangeVar`` → ``schema.name`` (unqualified: :func:`default_schema`, ``create`` for the relation a
    CREATE makes), as :func:`relation_key` writes it (a name with a dot is quoted, so every reader splits it where
    PostgreSQL does)."""
    rel = rv.get("relname", "")
    if create and rv.get("relpersistence") == "t":  # CREATE TEMP …: in the session's temporary schema
        return relation_key(TEMP, rel)
    return relation_key(rv.get("schemaname") or default_schema(rel, create=create), rel)


@dataclass
class Decision:
    """The chosen form and what it applies to; the knowledge row supplies the rest."""

    form: str
    targets: list[str]
    others: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inverse: str | None = None
    reversible: bool | None = None
    risk: Risk | None = None
    lock: str | None = None
    created_here: bool = False
    """what it drops was added earlier in the migration: nothing that predates it is lost"""


@dataclass
class CheckFacts:
    """What a CHECK expression proves: columns NOT NULL, integer ranges ``[low, high)`` per column."""

    not_null: set[str] = field(default_factory=set)
    ranges: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)


def _column(node: dict[str, Any]) -> str | None:
    fields = node.get("ColumnRef", {}).get("fields")
    return fields[-1].get("String", {}).get("sval") if fields else None


def _int(node: dict[str, Any]) -> int | None:
    const = node.get("A_Const", {})
    return const["ival"].get("ival", 0) if "ival" in const else None


def check_facts(expr: dict[str, Any]) -> CheckFacts:
    """The facts proven by the top-level AND chain of a CHECK expression (JSON parse tree)."""
    facts = CheckFacts()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node.get("BoolExpr", {}).get("boolop") == "AND_EXPR":
            stack.extend(node["BoolExpr"].get("args", []))
        elif "NullTest" in node and node["NullTest"].get("nulltesttype") == "IS_NOT_NULL":
            if col := _column(node["NullTest"].get("arg", {})):
                facts.not_null.add(col)
        elif "A_Expr" in node and node["A_Expr"].get("kind") == "AEXPR_OP":
            a = node["A_Expr"]
            op = a.get("name", [{}])[-1].get("String", {}).get("sval")
            col, value = _column(a.get("lexpr", {})), _int(a.get("rexpr", {}))
            if col and value is not None and op in (">=", ">", "<", "<="):
                low, high = facts.ranges.get(col, (None, None))
                if op == ">=":
                    low = value
                elif op == ">":
                    low = value + 1
                elif op == "<":
                    high = value
                else:
                    high = value + 1
                facts.ranges[col] = (low, high)
    return facts


def facts_of_definition(definition: str) -> CheckFacts:
    """Facts of a catalog CHECK definition such as ``CHECK ((nn IS NOT NULL))``."""
    body = definition.strip()
    if body.upper().startswith("CHECK"):
        body = body[5:]
    if body.upper().endswith("NOT VALID"):
        body = body[: -len("NOT VALID")]
    try:
        stmts = parse_json(f"SELECT 1 WHERE {body}")
    except ParseError:
        return CheckFacts()
    where = stmts[0]["stmt"]["SelectStmt"].get("whereClause", {}) if stmts else {}
    return check_facts(where)


@dataclass(eq=False, repr=False)  # running state, compared by identity: no generated __eq__/__repr__ to compile
class MigrationState:
    created: set[str] = field(default_factory=set)
    columns: dict[str, dict[str, ColumnType]] = field(default_factory=dict)
    checks: dict[tuple[str, str], CheckFacts] = field(default_factory=dict)
    check_columns: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(table, constraint) → the columns a CHECK added in this migration reads"""
    dropped_constraints: set[tuple[str, str]] = field(default_factory=set)
    validated: set[tuple[str, str]] = field(default_factory=set)
    foreign_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    partition_keys: dict[str, list[str]] = field(default_factory=dict)
    added_columns: set[tuple[str, str]] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    """relations dropped or renamed away earlier in this migration: their names are free again"""
    """(table, column) added by ADD COLUMN earlier in this migration (a later DROP of it loses nothing)"""
    made: set[str] = field(default_factory=set)
    """relations made under their name earlier in this migration: created, renamed to it or moved to its schema
    (connected only: :func:`~agent19.migrate.classification.existence.missing_relations` records them)"""
    opaque: bool = False
    """an earlier statement ran code that may make relations unseen (a DO block, CALL, a function, CREATE
    EXTENSION…): which exist is no longer known"""
    committing_procedures: dict[str, list[str]] = field(default_factory=dict)
    """procedures created earlier in this migration whose body commits (a batched backfill): name → the tables
    its statements write"""
    lock_timeout: str | None = None
    explicit_transaction: bool = False
    path: list[str] | None = None
    """the search_path the migration SET (one session's): where unqualified names are looked up; None until a
    ``SET search_path``: the session's own (:meth:`Context.search_path`); set by
    :mod:`~agent19.migrate.classification.session_path`"""
    local_path: list[str] | None = None
    """a ``SET LOCAL search_path`` (or ``set_config(…, true)``) in effect until the transaction ends"""
    tx_start: tuple[list[str] | None] | None = None
    """inside BEGIN … COMMIT: the session's path at BEGIN (a ROLLBACK restores it); None outside one"""
    savepoints: list[tuple[str, list[str] | None, list[str] | None]] = field(default_factory=list)
    """open savepoints: (name, path, local_path) when each was set"""
    schemas_created: set[str] = field(default_factory=set)
    """schemas CREATE SCHEMA made earlier in this migration: on the path from then on"""
    _anonymous: int = 0

    def add_column(self, table: str, col: str, ctype: ColumnType) -> None:
        self.columns.setdefault(table, {})[col] = ctype

    def forget_column(self, table: str, col: str | None) -> None:
        self.columns.get(table, {}).pop(col or "", None)

    def has_column(self, table: str, col: str) -> bool:
        return col in self.columns.get(table, {})

    def add_check(self, table: str, name: str | None, facts: CheckFacts, validated: bool,
                  columns: set[str] | None = None) -> None:
        if not name:
            self._anonymous += 1
            name = f"<unnamed {self._anonymous}>"
        self.checks[(table, name)] = facts
        self.check_columns[(table, name)] = columns or set()
        if validated:
            self.validated.add((table, name))

    def validate(self, table: str, name: str | None) -> None:
        if (table, name or "") in self.checks:
            self.validated.add((table, name or ""))

    def add_foreign_key(self, table: str, name: str | None, ref: str) -> None:
        if name:
            self.foreign_keys[(table, name)] = ref

    def knows_constraint(self, table: str, name: str) -> bool:
        return (table, name) in self.checks or (table, name) in self.foreign_keys

    def validated_checks(self, table: str) -> list[CheckFacts]:
        return [facts for (t, n), facts in self.checks.items() if t == table and (t, n) in self.validated]


@dataclass(eq=False, repr=False)  # running state, compared by identity: no generated __eq__/__repr__ to compile
class Context:
    catalog: SchemaSnapshot | None
    pg_major: int
    session_utc: bool
    state: MigrationState = field(default_factory=MigrationState)

    def table(self, name: str) -> Table | None:
        return self.catalog.table(name) if self.catalog else None

    def session_path(self) -> list[str]:
        """The path the migration SET for the session, else the login's (``current_schemas(false)`` of the catalog
        read), else (offline) ``public``."""
        if self.state.path is not None:
            return self.state.path
        if self.catalog is not None and self.catalog.search_path is not None:
            return self.catalog.search_path
        return [DEFAULT_SCHEMA]

    def search_path(self) -> list[str]:
        """The schemas unqualified names are looked up in, in order: the transaction's ``SET LOCAL`` path, else
        :meth:`session_path`; as the server uses it, without the schemas that do not exist or that the login has
        no USAGE on (the catalog read says which it has; one made earlier in the migration is the login's)."""
        path = self.state.local_path if self.state.local_path is not None else self.session_path()
        usable = self.catalog.usable_schemas if self.catalog is not None else None
        if usable is None:
            return path
        made = self.state.schemas_created
        return [s for s in path if s in usable or s in made or s == TEMP]

    def holds(self, schema: str, name: str) -> bool:
        """Whether ``schema`` holds a relation named ``name`` at this point of the migration: made earlier in it,
        or in the catalog and not dropped or renamed away earlier in it."""
        key = relation_key(schema, name)
        if key in self.state.dropped:
            return False
        return key in self.state.created or (self.catalog is not None and self.catalog.has_relation(schema, name))

    def relation_exists(self, name: str) -> bool | None:
        """Whether a relation named ``name`` (a table, view, materialized view, sequence or index: the names CREATE
        checks) exists at this point: in the catalog, and not dropped or renamed away earlier in the migration;
        None without a catalog."""
        if self.catalog is None:
            return None
        schema, rel = split_name(name)
        schema = schema or default_schema(rel)
        if relation_key(schema, rel) in self.state.dropped:
            return False
        return self.catalog.has_relation(schema, rel)

    def catalog_column(self, table: str, col: str) -> Column | None:
        t = self.table(table)
        return t.column(col) if t else None

    def column_type(self, table: str, col: str) -> ColumnType | None:
        """The column's type before this statement: from this migration first, else the catalog."""
        if self.state.has_column(table, col):
            return self.state.columns[table][col]
        column = self.catalog_column(table, col)
        return parse_format_type(column.type) if column else None

    def not_null_proven(self, table: str, col: str) -> tuple[bool, str]:
        for facts in self.state.validated_checks(table):
            if col in facts.not_null:
                return True, f"a CHECK ({col} IS NOT NULL) added and validated earlier in this migration proves it"
        t = self.table(table)
        if t is not None:
            column = t.column(col)
            if column is not None and not column.nullable:
                return True, f"{col} is already NOT NULL: nothing to check"
            for con in t.constraints:
                if con.type == "check" and con.validated and col in facts_of_definition(con.definition).not_null:
                    return True, f"the validated constraint {con.name} ({con.definition}) proves it"
            return False, f"no validated CHECK ({col} IS NOT NULL) on {table}: full scan"
        if table in self.state.created:
            return False, "the table was created in this migration"
        return False, f"no catalog: no validated CHECK ({col} IS NOT NULL) is known, so a full scan is assumed"

    def constraint_info(self, table: str, name: str) -> tuple[str | None, str | None]:
        """(referenced table if it is a foreign key, definition) of a constraint, when known."""
        if (table, name) in self.state.foreign_keys:
            return self.state.foreign_keys[(table, name)], None
        t = self.table(table)
        con = next((c for c in t.constraints if c.name == name), None) if t else None
        if con is None:
            return None, None
        return (con.references_table if con.type == "foreign_key" else None), con.definition

    def checks_reading(self, table: str, col: str) -> list[str]:
        """Validated CHECK constraints on ``table`` that read ``col`` (this migration's, then the catalog's)."""
        names = [n for (t, n), cols in self.state.check_columns.items()
                 if t == table and col in cols and (t, n) in self.state.validated]
        t = self.table(table)
        if t is not None:
            names += [c.name for c in t.constraints if c.type == "check" and c.validated and col in c.columns]
        return [n for n in dict.fromkeys(names) if (table, n) not in self.state.dropped_constraints]

    def partition_key(self, parent: str) -> list[str]:
        if parent in self.state.partition_keys:
            return self.state.partition_keys[parent]
        t = self.table(parent)
        if not t or not t.partition_key:
            return []
        try:
            stmts = parse_json(f"CREATE TABLE x () PARTITION BY {t.partition_key}")
        except ParseError:
            return []
        return [f["name"] for node, f in walk(stmts) if node == "PartitionElem" and "name" in f]

    def partition_bound_proven(self, parent: str, part: str, bound: dict[str, Any]) -> tuple[bool, str]:
        """Whether validated CHECKs on ``part`` imply a single-column range bound (the scan is skipped)."""
        key = self.partition_key(parent)
        lower = [_int(d) for d in bound.get("lowerdatums", [])]
        upper = [_int(d) for d in bound.get("upperdatums", [])]
        if bound.get("strategy") != "r" or len(key) != 1 or len(lower) != 1 or len(upper) != 1 or None in (
                lower[0], upper[0]):
            return False, "the partition is scanned to check its rows against the bound (no provable CHECK)"
        col = key[0]
        facts = list(self.state.validated_checks(part))
        t = self.table(part)
        if t:
            facts += [facts_of_definition(c.definition) for c in t.constraints if c.type == "check" and c.validated]
        for f in facts:
            low, high = f.ranges.get(col, (None, None))
            if col in f.not_null and low is not None and high is not None and low >= lower[0] and high <= upper[0]:
                return True, f"a validated CHECK on {part} implies the bound [{lower[0]}, {upper[0]}): no scan"
        return False, f"no validated CHECK on {part} implies {col} IS NOT NULL AND the bound: full scan"


def if_not_exists(what: str, exists: bool | None, inverse: str, notes: list[str], guarded: bool = True
                  ) -> dict[str, Any]:
    """The rollback of a CREATE (``guarded``: … IF NOT EXISTS, ADD COLUMN IF NOT EXISTS) as ``Decision`` keywords:
    ``inverse`` only when the catalog shows the migration creates ``what``. One that exists already is left as it
    is: IF NOT EXISTS does nothing, a plain CREATE fails; either way nothing to undo, and ``inverse`` would destroy
    what predates the migration (a table's or a column's rows, an index the application relies on). Without a
    catalog a guarded CREATE gets no automatic inverse (nobody knows); a plain one that succeeded created it."""
    if exists is None and not guarded:
        return {"notes": notes, "inverse": inverse}
    if exists is None:
        return {"notes": [*notes, f"IF NOT EXISTS: {what} may exist before the migration, and {inverse} would "
                          "destroy it: no automatic inverse; run it by hand only if this migration created it (plan "
                          "with a database connected to know)"], "reversible": False}
    if exists:
        does = "IF NOT EXISTS makes this do nothing" if guarded else "this statement fails"
        return {"notes": [*notes, f"{what} exists already: {does}, and the rollback leaves it alone"],
                "reversible": True}
    return {"notes": notes, "inverse": inverse}
