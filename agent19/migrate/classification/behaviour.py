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
    destroys: str = ""
    """The kind of object it removes or empties — table, column, schema, database, index, view… — which
    safety detection (:mod:`agent19.safety.detect`) stops before it runs; empty when it removes no object
    by itself (a dropped constraint or default loses a guarantee, not an object)."""
    loses: str = ""
    """The data that is gone for good, in words (no rollback SQL brings it back); empty when only a
    definition goes. :attr:`data_loss` is read from it; safety detection and the runbook say it."""
    risk: Risk = "low"
    note: str = ""
    versions: tuple[int, int] = (MIN_VERSION, MAX_VERSION)
    example: str = ""
    """A statement against tests/corpus/observed_schema.sql that shows this row on a server."""
    example_error: str | None = None
    """The psycopg error class the example raises on the populated table, when it must fail."""
    example_timezone: str = "UTC"
    """The session time zone the example runs under (the rule depends on it)."""

    @property
    def data_loss(self) -> bool:
        """Whether running it loses data that no rollback SQL brings back."""
        return bool(self.loses)

    @property
    def family(self) -> str:
        """The form without its variant and without ``alter_table.``: ``drop_index.concurrently`` →
        ``drop_index``, ``alter_table.drop_column`` → ``drop_column`` (safety detection's finding kinds)."""
        return self.form.removeprefix("alter_table.").split(".")[0]
