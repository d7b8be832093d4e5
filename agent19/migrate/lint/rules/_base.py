"""What a lint rule is, and what it sees.

A rule is one module in this package that defines ``RULE = Rule(...)``: a code and a slug, a title,
the default severity, why it matters, the safe alternative, a bad and a good example (both linted by
the tests: the bad one must trigger the rule, the good one must not) and ``check``, a function from a
:class:`StatementContext` to the :class:`Hit` s it finds.

Rules decide from the classified :class:`~agent19.migrate.model.Operation` (lock, rewrite, scan —
observed facts, see ``agent19.migrate.classification.knowledge``) and from the parse tree; never from folklore. A
statement on a table created earlier in the same migration cannot block anyone, so rules that are
about blocking skip such tables (:meth:`StatementContext.is_new`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, TypeVar

from agent19.db.locks import LOCK_MODES
from agent19.migrate.classification.state import range_name
from agent19.migrate.layouts.files import Migration
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement
from agent19.migrate.patterns import sqlnames
from agent19.migrate.patterns.sqlnames import ident
from agent19.sqltree import UNTAGGED, untagged, walk

if TYPE_CHECKING:  # annotations only: the catalog models load where a catalog is read
    from agent19.db.models import SchemaSnapshot, Table
    from agent19.migrate.classification.existence import Missing

_T = TypeVar("_T")
Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: tuple[Severity, ...] = ("info", "warning", "error")

LOCK_ORDER = LOCK_MODES

BLOCKS_WRITES = set(LOCK_ORDER[LOCK_ORDER.index("ShareLock"):])
_RANK = {mode: i + 1 for i, mode in enumerate(LOCK_ORDER)}
"""lock mode → its rank from 1 (weakest); :func:`lock_rank` gives 0 for anything else"""


class _once(Generic[_T]):  # noqa: N801 - used as a decorator, like functools.cached_property
    """``functools.cached_property`` without its lock (Python 3.11 takes an RLock on every first read, a statement's
    every ``fields`` and ``relation``): the value is written into the instance's ``__dict__`` under the same name,
    where later reads find it without calling this (a non-data descriptor), and a ``__dict__.pop`` forgets it."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func, self.name, self.__doc__ = func, func.__name__, func.__doc__

    def __get__(self, obj: Any, cls: Any = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]  # read on the class (documentation tools)
        value = obj.__dict__[self.name] = self.func(obj)
        return value


def lock_rank(lock: str | None) -> int:
    return _RANK.get(lock, 0)  # type: ignore[arg-type]


class LazyText:
    """A finding's message or fix written when it is read: ``make(*args)``, called each time and kept by no one.
    A large migration's fixes (several kB of SQL each for a type change) and messages were most of its report's
    memory, held from the statement's lint until the report was written; the arguments are names and texts the
    report holds anyway."""

    __slots__ = ("make", "args")

    def __init__(self, make: Callable[..., str], *args: Any) -> None:
        self.make, self.args = make, args

    def __str__(self) -> str:
        return self.make(*self.args)


class Hit(NamedTuple):  # immutable, and built for every finding at a tuple's cost (a frozen dataclass sets each field)
    message: str | LazyText
    fix: str | LazyText | None = None
    severity: Severity | None = None
    """Overrides the rule's default severity for this finding (a rule with cases of different weight)."""


@dataclass(eq=False, repr=False)  # running state, compared by identity: no generated __eq__/__repr__ to compile
class MigrationState:
    """What the statements before the current one did: within the linted set (created tables, CHECKs) or within
    the file (lock_timeout, transactions, the statements seen) — see agent19.migrate.lint.engine._next_file."""

    created: set[str] = field(default_factory=set)
    lock_timeout: bool = False
    lock_timeout_tx: int | None = None
    """transaction id in which ``SET LOCAL lock_timeout`` is in force"""
    check_columns: set[tuple[str, str]] = field(default_factory=set)
    """(table, column) read by a validated CHECK added in this migration"""
    check_names: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    not_null_checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    """constraint name → (table, column) of a ``CHECK (col IS NOT NULL)`` added in this migration."""
    validated_not_null: set[tuple[str, str]] = field(default_factory=set)
    added_columns: set[tuple[str, str]] = field(default_factory=set)
    """(table, column) added in this migration: no running client knows them yet"""
    seen: list[StatementContext] = field(default_factory=list)
    seen_in_transaction: dict[int, list[StatementContext]] = field(default_factory=dict)
    """``seen`` by transaction id (``tx_group``): a rule about the transaction reads its own statements, not the file"""
    last_touch: dict[str, StatementContext] = field(default_factory=dict)
    """table → the latest statement that touched it"""
    cache: dict[str, Any] = field(default_factory=dict)
    """data that rules compute once per linted set (keyed by rule)"""
    set_statements: list[Statement] = field(default_factory=list)
    """every statement of the linted set, all files in order (for rules that look ahead or back across files)"""


@dataclass(eq=False, repr=False)  # running state, compared by identity: no generated __eq__/__repr__ to compile
class StatementContext:
    statement: Statement
    operations: list[Operation]
    migration: Migration
    tx_group: int | None
    """id of the transaction block it runs in (explicit or the tool's), None when it runs alone"""
    pg_version: int
    catalog: SchemaSnapshot | None
    state: MigrationState
    assume: frozenset[str] = frozenset()
    """what the team states it knows (``--assume`` / ``[lint] assume``; see agent19.migrate.lint.config)"""
    missing: Sequence[Missing] = ()
    """connected: the relations the statement needs that will not exist when it runs
    (:func:`~agent19.migrate.classification.existence.missing_relations`)"""

    # -- the parse tree ---------------------------------------------------------------------
    @_once  # read by most rules: then a plain attribute
    def node(self) -> str:
        return self.statement.node

    @_once
    def fields(self) -> dict[str, Any]:
        return self.statement.fields

    @_once
    def sql(self) -> str:
        return self.statement.sql

    def alter_cmds(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(sub_index, subtype, AlterTableCmd fields)`` of an ALTER TABLE (listed once per statement: a dozen
        rules read them)."""
        cmds = self.__dict__.get("_alter_cmds")
        if cmds is None:
            cmds = self.__dict__["_alter_cmds"] = [] if self.node != "AlterTableStmt" else [
                (i, c.get("subtype", ""), c)
                for i, c in enumerate(cmd.get("AlterTableCmd", {}) for cmd in self.fields.get("cmds", []))]
        return iter(cmds)

    @_once
    def relation(self) -> str | None:
        rel = self.fields.get("relation")
        return rel_name(rel, create=self.node == "CreateStmt") if isinstance(rel, dict) else None

    def walk(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return walk(self.statement.tree)

    def nodes(self, node_type: str) -> Iterator[dict[str, Any]]:
        """The fields of every ``node_type`` node in the statement, in :meth:`walk` order; no walk at all when
        the tree has none (:meth:`~agent19.migrate.parse.Statement.may_contain`)."""
        if not self.statement.may_contain(node_type):
            return
        bare = node_type in UNTAGGED  # also found untagged (sqltree.walk yields it so)
        stack: list[Any] = [self.statement.tree]
        while stack:  # agent19.sqltree.walk's order, yielding only node_type (not every node through a filter)
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, dict):
                        if key == node_type or (bare and untagged(key, value, node_type)):
                            yield value
                        stack.append(value)
                    elif isinstance(value, list):  # a scalar has nothing below it: not stacked
                        stack.append(value)
            elif isinstance(item, list):
                stack.extend(item)

    # -- classification ----------------------------------------------------------------------
    def op(self, sub_index: int | None = None) -> Operation | None:
        """The operation of sub-command ``sub_index`` (or the statement's only/first one)."""
        for o in self.operations:
            if o.sub_index == sub_index:
                return o
        if sub_index is not None and len(self.operations) == 1 and self.operations[0].sub_index is None:
            return self.operations[0]
        return self.operations[0] if sub_index is None and self.operations else None

    @property
    def lock(self) -> str | None:
        return max((o.lock for o in self.operations if o.lock), key=lock_rank, default=None)

    def long_running(self) -> bool:
        """Reads or rewrites a pre-existing table while holding its lock (time grows with the table)."""
        return any((o.scan or o.rewrite) and not (o.tables and self.is_new(o.tables[0])) for o in self.operations)

    # -- the migration so far ----------------------------------------------------------------
    def is_new(self, table: str | None) -> bool:
        """Created earlier in this migration (so empty and invisible to other sessions)."""
        return table is not None and (table if "." in table else f"public.{table}") in self.state.created  # norm

    def table(self, name: str | None) -> Table | None:
        return self.catalog.table(name) if self.catalog and name else None

    @property
    def major(self) -> int:
        return self.pg_version // 10000

    def retire(self, release_tree: bool = True) -> None:
        """Keep only what later statements read of this one (in ``state.seen`` and ``state.last_touch``): the
        parse tree goes back to its JSON text (decoded again if a rule reads it) unless ``release_tree`` is
        False, each operation to the facts rules compare (:class:`PastOperation`). A large file's statements then
        cost little memory once linted."""
        self.__dict__.pop("fields", None)
        self.__dict__.pop("_alter_cmds", None)
        if release_tree:
            self.statement.release_tree()
        self.operations = [PastOperation.of(o) for o in self.operations]  # type: ignore[misc]


class PastOperation(NamedTuple):
    """An earlier statement's :class:`~agent19.migrate.model.Operation`, as later statements' rules read it
    (the notes, SQL texts and inverse are the statement's own report, already written). Immutable; a tuple, so
    every statement's operations are kept at a tuple's cost (a frozen dataclass sets each field on its own)."""

    kind: str
    category: str
    tables: list[str]
    locks: dict[str, str]
    lock: str | None
    rewrite: bool
    scan: bool
    in_transaction: bool
    sub_index: int | None
    risk: str
    new_table: bool
    data_loss: bool

    @classmethod
    def of(cls, o: Operation) -> PastOperation:
        return cls(o.kind, o.category, o.tables, o.locks, o.lock, o.rewrite, o.scan, o.in_transaction, o.sub_index,
                   o.risk, o.new_table, o.data_loss)


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    title: str
    severity: Severity
    why: str
    alternative: str
    bad: str
    good: str
    check: Callable[[StatementContext], Iterable[Hit]]
    pg_version: int = 160000
    """the PostgreSQL version the examples are linted for"""
    good_pg_version: int | None = None
    """the version for the good example, when it differs"""
    group: Literal["safety", "style"] = "safety"
    """``style`` rules are off unless the config turns the group (``style = true``) or the rule on"""
    aliases: tuple[str, ...] = ()
    """other names accepted in config and ignore comments (squawk's rule names, for teams switching)"""
    nodes: tuple[str, ...] = ()
    """the statement types (top-level parse nodes, e.g. ``AlterTableStmt``) ``check`` can find anything in; the
    engine calls it only for those (empty: every statement). tests/test_lint_dispatch.py runs every rule on every
    statement of the corpora to prove a declaration leaves nothing out."""
    live: bool = False
    """finds something only with the database's catalog (connected): the tests lint its examples against an empty
    catalog"""
    subcommands: tuple[str, ...] = ()
    """for an ``AlterTableStmt``: the sub-command types (``AlterTableCmd`` subtypes, e.g. ``AT_AddColumn``) ``check``
    can find anything in; the engine calls it only for an ALTER TABLE with one of them (empty: every one; statements
    of other types are not filtered by this). Proved like :attr:`nodes`."""


# -- small helpers rules share ---------------------------------------------------------------

def rel_name(rangevar: dict[str, Any], *, create: bool = False) -> str:
    """``{"schemaname": "s", "relname": "t"}`` → ``s.t`` (unqualified: the schema the session's search_path resolves
    it to, ``create`` for the relation a CREATE makes: :func:`~agent19.migrate.classification.state.range_name`;
    ``public`` offline), as :func:`~agent19.migrate.patterns.sqlnames.relation_key` writes it: ``"public"."we.ird"``
    for a name with a dot."""
    return range_name(rangevar, create=create)


def norm(table: str) -> str:
    return table if "." in table else f"public.{table}"


def short(table: str | None) -> str:
    """``public.t`` → ``t`` for messages and generated SQL (split as :func:`rel_name` wrote it)."""
    if not table:
        return "?"
    schema, name = sqlnames.split_name(table)
    return sqlnames.qualified(schema if schema != "public" else None, name)


def type_name(type_node: dict[str, Any]) -> str:
    """``TypeName`` → its last name part, e.g. ``int4``, ``serial``, ``json``."""
    names = type_node.get("names", [])
    return names[-1].get("String", {}).get("sval", "") if names else ""


def column_constraints(coldef: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.get("Constraint", {}) for c in coldef.get("constraints", [])]


def index_name_for(table: str | None, columns: list[str], suffix: str = "idx") -> str:
    base = sqlnames.split_name(table or "t")[1]
    return ident(sqlnames.short(f"{base}_{'_'.join(columns)}", f"_{suffix}"))


def typed_tree(sql: str) -> Any:
    """The statement's typed pglast AST (for deparsing pieces of it into generated SQL)."""
    from pglast import parse_sql

    return parse_sql(sql)[0].stmt


def deparse(node: Any) -> str:
    """``node`` as SQL, exactly as ``pglast.stream.RawStream()(node)`` writes it.

    RawStream first sets every node's ``ancestors`` (the printers read them) with
    ``pglast.visitors.populate_ancestors``: a Visitor class defined and its methods looked up on every call, then
    a generator resumed once per node — half the cost of a fix. :func:`set_ancestors` gives every node the same
    chain directly."""
    from pglast.stream import RawStream

    stream = RawStream()
    set_ancestors((node,))  # RawStream wraps a lone node in a tuple before setting ancestors
    stream.print_node(node)
    return str(stream.getvalue())


def set_ancestors(tree: Any) -> None:
    """What ``pglast.visitors.populate_ancestors(tree)`` does: the breadth-first walk of ``Visitor.iterate``, each
    node given ``Ancestor(parent, container, member)`` exactly as there (tests/test_lint_dispatch.py compares the
    chains), without the visitor machinery."""
    from pglast.ast import Node
    from pglast.visitors import Ancestor

    todo: deque[tuple[Any, Any]] = deque([(Ancestor(), tree)])
    while todo:
        ancestors, node = todo.popleft()
        is_sequence = isinstance(node, tuple)
        for index, sub in enumerate(node if is_sequence else (node,)):
            sub_ancestors = Ancestor(ancestors, node, index) if is_sequence else ancestors
            if isinstance(sub, Node):
                sub.ancestors = sub_ancestors
                for member in sub:
                    value = getattr(sub, member)
                    if isinstance(value, (tuple, Node)):
                        todo.append((Ancestor(sub_ancestors, sub, member), value))
            elif isinstance(sub, tuple):
                for sub_index, value in enumerate(sub):
                    if isinstance(value, (tuple, Node)):
                        todo.append((Ancestor(sub_ancestors, sub, sub_index), value))


def where_clause(fields: dict[str, Any]) -> bool:
    return bool(fields.get("whereClause"))


def every_row(ctx: StatementContext) -> str | None:
    """How a DELETE/UPDATE reaches every row — ``"without WHERE"``, ``"with a WHERE that is true for every row"``
    (``WHERE true``, ``1=1``, ``id IS NOT NULL`` on a NOT NULL column) — or None. The WHERE is read by
    :func:`agent19.safety.where.always_true`, so lint and the safety check agree on it."""
    where = ctx.fields.get("whereClause")
    if not where:
        return "without WHERE"
    from agent19.safety.where import always_true  # here: only DELETE and UPDATE statements need it

    rel = ctx.fields.get("relation", {})
    t = ctx.table(norm(ctx.relation or ""))
    not_null = {c.name for c in t.columns if not c.nullable} if t is not None else set()
    names = {rel.get("relname"), (rel.get("alias") or {}).get("aliasname")} - {None}
    return "with a WHERE that is true for every row" if always_true(where, not_null, names) else None
