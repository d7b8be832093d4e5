"""One row of the knowledge table (:mod:`agent19.migrate.classification.knowledge_table`),
read by :mod:`agent19.migrate.classification.knowledge`."""

from __future__ import annotations

from dataclasses import dataclass

from agent19.migrate.model import Category, Risk

MIN_VERSION, MAX_VERSION = 11, 17


@dataclass(frozen=True)
class Behaviour:
    """One row of the knowledge table: what a statement form does on PostgreSQL ``versions``.

    ``lock`` is the mode taken on the statement's target relation; ``other_lock`` the mode on
    the second relation it names (the referenced table of a foreign key, the partition being
    attached or detached, the table a trigger or policy is on when the target is not a table).
    ``scan`` means it reads the whole table while holding ``lock``; ``rewrite`` that the table
    gets a new relfilenode (all rows copied).
    """

    form: str
    category: Category
    kind: str
    lock: str | None
    other_lock: str | None = None
    rewrite: bool = False
    scan: bool = False
    in_transaction: bool = True
    reversible: bool = True
    data_loss: bool = False
    risk: Risk = "low"
    note: str = ""
    versions: tuple[int, int] = (MIN_VERSION, MAX_VERSION)
    example: str = ""
    """A statement against tests/corpus/observed_schema.sql that shows this row on a server."""
    example_error: str | None = None
    """The psycopg error class the example raises on the populated table, when it must fail."""
    example_timezone: str = "UTC"
    """The session time zone the example runs under (the rule depends on it)."""
