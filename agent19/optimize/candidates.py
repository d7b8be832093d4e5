"""Candidate indexes from a query's shape: its predicates, joins, ORDER BY and GROUP BY.

sqlglot qualifies every column against the catalog (so ``amount`` becomes ``orders.amount``
even without an alias), then each scope's conjuncts are sorted into equality, range, join and
pattern columns per table. Composite candidates put equality columns first, then one range (or
the ORDER BY) column; a covering variant INCLUDEs the other columns the query reads from the
table when that enables an index-only scan. A candidate that an existing valid btree index
already serves (its columns are a prefix of that index's) is not proposed.

Partial candidates: an equality with a constant on a low-cardinality column whose value is rare
(``status = 'pending'`` where 'pending' is a few per cent of the rows, per ``pg_stats``) also yields
an index on the query's other columns ``WHERE status = 'pending'`` — far smaller than the full index,
and the planner (HypoPG included) uses it only for queries that imply the predicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import ident as _q
from agent19.migrate.patterns.sqlnames import literal

if TYPE_CHECKING:  # sqlglot (a large import) is loaded by the first query read, not by declaring the tools
    from sqlglot import exp

MAX_KEY_COLUMNS = 4
MAX_INCLUDE = 4
PARTIAL_MAX_FRACTION = 0.05
"""A constant predicate is selective enough for a partial index when it keeps at most this share of rows."""
PARTIAL_MAX_DISTINCT = 100
"""… and its column has at most this many distinct values (a status, a flag: not an id, whose full index serves)."""


@dataclass
class TableInfo:
    schema: str
    name: str
    columns: dict[str, str]
    indexes: list[tuple[str, str, list[str], bool]] = field(default_factory=list)
    """(name, method, key columns, partial) of valid indexes."""
    rows: float = 0
    stats: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    """column → (pg_stats.n_distinct, {most common value as text: frequency})."""
    size_bytes: int = 0

    def fraction(self, column: str, value: str) -> float | None:
        """The share of rows where ``column = value`` per pg_stats, for low-cardinality columns only."""
        if column not in self.stats:
            return None
        n_distinct, mcv = self.stats[column]
        distinct = n_distinct if n_distinct >= 0 else -n_distinct * self.rows
        if not 0 < distinct <= PARTIAL_MAX_DISTINCT:
            return None
        if value in mcv:
            return mcv[value]
        rest = max(distinct - len(mcv), 1)
        return max(0.0, 1 - sum(mcv.values())) / rest

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Candidate:
    table: str
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    method: str = "btree"
    opclass: str | None = None
    reason: str = ""
    where: str | None = None
    """a partial index's predicate, SQL on the table's columns"""

    def definition(self, name: str | None = None, concurrently: bool = False) -> str:
        cols = ", ".join(_q(c) + (f" {self.opclass}" if self.opclass else "") for c in self.columns)
        using = "" if self.method == "btree" else f" USING {self.method}"
        inc = f" INCLUDE ({', '.join(_q(c) for c in self.include)})" if self.include else ""
        conc = " CONCURRENTLY" if concurrently else ""
        where = f" WHERE {self.where}" if self.where else ""
        schema, _, table = self.table.partition(".")
        return (f"CREATE INDEX{conc}{f' {_q(name)}' if name else ''} ON {_q(schema)}.{_q(table)}{using} ({cols})"
                f"{inc}{where}")

    def name(self) -> str:
        base = (self.table.split(".")[-1] + "_" + "_".join(self.columns) + ("_incl" if self.include else "")
                + ("_part" if self.where else "") + "_idx")
        return base[:63]


@dataclass
class Shape:
    eq: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    pattern: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    constants: dict[str, tuple[str, str]] = field(default_factory=dict)
    """column → (the constant as SQL, as pg_stats prints it) for ``column = constant``"""

    @staticmethod
    def add(items: list[str], col: str) -> None:
        if col not in items:
            items.append(col)


def _is_value(node: exp.Expression) -> bool:
    from sqlglot import exp

    return not list(node.find_all(exp.Column)) and not list(node.find_all(exp.Select))


def _qualify_by_path(tree: exp.Expression, tables: dict[str, TableInfo]) -> None:
    """Give each table the query names without a schema the schema the server finds it in: ``tables`` holds a
    bare name for the table of the first schema on the session's search_path that has one (a table in two schemas
    is no longer ambiguous to sqlglot). A CTE's name is left alone."""
    from sqlglot import exp

    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.db and table.name not in ctes and (info := tables.get(table.name)) is not None:
            table.set("db", exp.to_identifier(info.schema))


def _rows_changed(tree: exp.Expression) -> exp.Expression:
    """An UPDATE or DELETE as the SELECT of the rows it changes (its tables, joins and WHERE: what its scan filters
    on, which is what an index can serve); any other statement as it is."""
    from sqlglot import exp

    if not isinstance(tree, exp.Update | exp.Delete):
        return tree
    select = exp.select("1").from_(tree.this.copy())
    frm = tree.args.get("from_") or tree.args.get("from")
    using = tree.args.get("using")
    for table in ([frm.this] if isinstance(frm, exp.From) else []) + (using if isinstance(using, list) else []):
        select = select.join(table.copy())
    if isinstance(where := tree.args.get("where"), exp.Where):
        select = select.where(where.this.copy())
    key = "with_" if "with_" in tree.args else "with"
    if isinstance(with_ := tree.args.get(key), exp.With):
        select.set(key, with_.copy())
    return select


def query_shape(sql: str, tables: dict[str, TableInfo]) -> dict[str, Shape]:
    """Per qualified table name, the columns the query filters, joins, orders and groups on."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import traverse_scope

    schema: dict[str, dict[str, dict[str, str]]] = {}
    for t in tables.values():
        schema.setdefault(t.schema, {})[t.name] = t.columns
    try:
        tree = _rows_changed(sqlglot.parse_one(sql, read="postgres"))
        _qualify_by_path(tree, tables)
        tree = qualify(tree, schema=schema, dialect="postgres", validate_qualify_columns=False,
                       quote_identifiers=False)
    except SqlglotError as exc:
        raise InputError(f"the index advisor cannot read this query: {exc}", "pass a single SELECT/UPDATE/DELETE") \
            from None
    shapes: dict[str, Shape] = {}
    for scope in traverse_scope(tree):
        aliases: dict[str, TableInfo] = {}
        for alias, source in scope.sources.items():
            if isinstance(source, exp.Table):
                info = tables.get(f"{source.db}.{source.name}" if source.db else source.name)
                if info:
                    aliases[alias] = info

        def owner(col: Any, aliases: dict[str, TableInfo] = aliases) -> tuple[TableInfo, str] | None:
            if isinstance(col, exp.Column) and col.table in aliases and col.name in aliases[col.table].columns:
                return aliases[col.table], col.name
            return None

        def shape(info: TableInfo) -> Shape:
            return shapes.setdefault(info.qualified, Shape())

        for col in scope.columns:
            found = owner(col)
            if found:
                Shape.add(shape(found[0]).read, found[1])
        node = scope.expression
        conds: list[exp.Expression] = []
        if node.args.get("where") is not None:
            conds.append(node.args["where"].this)
        for join in node.args.get("joins") or []:
            if join.args.get("on") is not None:
                conds.append(join.args["on"])
        for cond in conds:
            for c in cond.flatten() if isinstance(cond, exp.And) else [cond]:
                _classify(c, owner, shape)
        order = node.args.get("order")
        if order is not None:
            owners = [owner(o.this) for o in order.expressions]
            if owners and all(owners) and len({o[0].qualified for o in owners if o}) == 1:
                for o in owners:
                    if o:
                        Shape.add(shape(o[0]).order, o[1])
        group = node.args.get("group")
        if group is not None:
            for g in group.expressions:
                found = owner(g)
                if found:
                    Shape.add(shape(found[0]).group, found[1])
    return shapes


def _classify(c: exp.Expression, owner: Any, shape: Any) -> None:
    from sqlglot import exp

    if isinstance(c, exp.Paren):
        c = c.this
    if isinstance(c, exp.EQ):
        left, right = owner(c.this), owner(c.expression)
        if left and right and left[0] is not right[0]:
            Shape.add(shape(left[0]).join, left[1])
            Shape.add(shape(right[0]).join, right[1])
        elif left and _is_value(c.expression):
            Shape.add(shape(left[0]).eq, left[1])
            _constant(shape(left[0]), left[1], c.expression)
        elif right and _is_value(c.this):
            Shape.add(shape(right[0]).eq, right[1])
            _constant(shape(right[0]), right[1], c.this)
    elif isinstance(c, (exp.In, exp.Is)):
        found = owner(c.this)
        if found:
            Shape.add(shape(found[0]).eq, found[1])
    elif isinstance(c, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)):
        found = owner(c.this)
        other = c.expression if not isinstance(c, exp.Between) else c.args.get("low")
        if found and other is not None and _is_value(other):
            Shape.add(shape(found[0]).range, found[1])
        elif not isinstance(c, exp.Between):
            right = owner(c.expression)
            if right and _is_value(c.this):
                Shape.add(shape(right[0]).range, right[1])
    elif isinstance(c, (exp.Like, exp.ILike)):
        found = owner(c.this)
        pattern = c.expression
        if found and isinstance(pattern, exp.Literal) and pattern.this[:1] in {"%", "_"}:
            Shape.add(shape(found[0]).pattern, found[1])


def _constant(shape: Shape, column: str, value: exp.Expression) -> None:
    """Record ``column = <literal>`` (a string, number or boolean) for partial-index candidates."""
    from sqlglot import exp

    while isinstance(value, (exp.Cast, exp.Paren)):
        value = value.this
    if isinstance(value, exp.Literal):
        text = value.this
        shape.constants[column] = (literal(text) if value.is_string else text, text)
    elif isinstance(value, exp.Boolean):
        shape.constants[column] = ("true" if value.this else "false", "t" if value.this else "f")


def _served(table: TableInfo, columns: tuple[str, ...]) -> str | None:
    for name, method, keys, partial in table.indexes:
        if method == "btree" and not partial and tuple(keys[: len(columns)]) == columns:
            return name
    return None


def candidates(shapes: dict[str, Shape], tables: dict[str, TableInfo]) -> tuple[list[Candidate], dict[str, str]]:
    """Candidate indexes, and the ones skipped because an existing index already serves them."""
    by_name = {t.qualified: t for t in tables.values()}
    out: list[Candidate] = []
    served: dict[str, str] = {}

    def propose(table: TableInfo, cols: list[str], reason: str, include: list[str] | None = None) -> None:
        keys = tuple(dict.fromkeys(cols))[:MAX_KEY_COLUMNS]
        if not keys:
            return
        existing = _served(table, keys)
        if existing and not include:
            served[Candidate(table.qualified, keys).definition()] = existing
            return
        cand = Candidate(table.qualified, keys, tuple(c for c in include or [] if c not in keys), reason=reason)
        if cand not in out:
            out.append(cand)

    for qualified, s in shapes.items():
        table = by_name[qualified]
        if s.eq or s.range:
            propose(table, s.eq + s.range[:1], "equality columns first, then the range column")
            for extra in s.range[1:2]:
                propose(table, s.eq + [extra], "equality columns, then another range column")
        if s.order:
            propose(table, s.eq + s.order, "filter then ORDER BY: rows come out sorted, no sort step")
        for j in s.join:
            propose(table, [j], "join column: an index lookup per joined row")
            if s.eq:
                propose(table, s.eq + [j], "equality filter, then the join column")
        if s.group and len(s.group) <= 3:
            propose(table, s.group, "GROUP BY columns: grouping from a sorted index")
        keys = list(dict.fromkeys(s.eq + s.range[:1] + s.join[:1]))[:MAX_KEY_COLUMNS]
        rest = [c for c in s.read if c not in keys]
        if keys and rest and len(rest) <= MAX_INCLUDE:
            propose(table, keys, "covering: INCLUDE the other columns read, for an index-only scan", include=rest)
        for col, (sql_value, text) in s.constants.items():
            share = table.fraction(col, text)
            if share is None or share > PARTIAL_MAX_FRACTION:
                continue
            rest = [c for c in s.eq if c != col] + s.range[:1]
            keys = tuple(dict.fromkeys(rest or s.order or s.join[:1] or [col]))[:MAX_KEY_COLUMNS]
            cand = Candidate(table.qualified, keys, where=f"{_q(col)} = {sql_value}",
                             reason=f"partial: {col} = {sql_value} keeps {share:.1%} of the rows (pg_stats), so "
                             "the index holds only those")
            if cand not in out:
                out.append(cand)
        for col in s.pattern:
            out.append(Candidate(table.qualified, (col,), method="gin", opclass="gin_trgm_ops",
                                 reason="leading-wildcard LIKE: a trigram index (pg_trgm)"))
    return out, served
