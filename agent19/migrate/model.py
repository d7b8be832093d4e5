"""The engine's vocabulary for migrations: what one operation does to the server.

:class:`Operation` is produced by classification (``agent19.migrate.classification.classify``) from a parsed
:class:`~agent19.migrate.parse.Statement` — one per statement, or one per sub-command of an
``ALTER TABLE`` with several — and read by lint rules, the planner, the dry run (which compares
its predictions with what the server shows), runbooks and handoffs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Risk = Literal["low", "medium", "high", "critical"]
RISK_ORDER: tuple[Risk, ...] = ("low", "medium", "high", "critical")

Category = Literal[
    "create_table", "alter_table", "drop_table", "create_index", "drop_index", "data_migration", "other"
]
"""The coarse kinds (the seed's); :attr:`Operation.kind` refines them."""


def max_risk(risks: list[Risk]) -> Risk:
    return max(risks, key=RISK_ORDER.index) if risks else "low"


@dataclass(kw_only=True)
class Operation:
    statement_index: int = field(metadata={"description": "index of the statement in its file or text"})
    sub_index: int | None = field(default=None, metadata={"description": "sub-command of a multi-command ALTER TABLE"})
    file: str | None = None
    line: int
    sql: str = field(metadata={"description": "the statement (or the sub-command rendered as its own ALTER TABLE)"})
    category: Category
    kind: str = field(metadata={"description": "refined kind, e.g. add_column, set_not_null, alter_column_type"})
    tables: list[str] = field(default_factory=list, metadata={"description": "schema-qualified relations it touches"})
    locks: dict[str, str] = field(default_factory=dict, metadata={
        "description": "relation -> lock mode it takes there, in pg_locks spelling (AccessExclusiveLock...)"})
    lock: str | None = field(default=None, metadata={"description": "the strongest lock mode it takes"})
    rewrite: bool = field(default=False, metadata={"description": "rewrites the table (new relfilenode)"})
    scan: bool = field(default=False, metadata={"description": "reads the whole table while holding its lock"})
    in_transaction: bool = field(default=True, metadata={"description": "can run inside a transaction block"})
    reversible: bool = True
    inverse_sql: str | None = field(default=None, metadata={"description": "SQL that undoes it, when it can be undone"})
    data_loss: bool = False
    risk: Risk = "low"
    notes: list[str] = field(default_factory=list, metadata={
        "description": "the PostgreSQL rules that decided the above"})
    form: str | None = field(default=None, metadata={
        "description": "the knowledge-table row that decided it, e.g. alter_table.add_column.default"})
    lock_timeout: str | None = field(default=None, metadata={
        "description": "lock_timeout in effect (from a SET earlier in the migration), None if never set"})
    explicit_transaction: bool = field(default=False, metadata={
        "description": "runs inside an explicit BEGIN ... COMMIT of the migration text"})
    new_table: bool = field(default=False, metadata={
        "description": "every table it touches was created earlier in the migration"})
    created_here: bool = field(default=False, metadata={
        "description": "what it drops was added earlier in the same migration (e.g. a column added then dropped): "
        "no data or client predates it"})
