"""The read guard of a data-quality run's built queries (:mod:`agent19.etl.quality_run`).

A query built only from catalog names (no user SQL) does not pass through :func:`agent19.safety.gate.admit`, yet
planning and reading the relations it names runs code their owners wrote (index expressions the planner folds,
statistics objects, partition keys, CHECKs, policies): :class:`ReadGuard` refuses it when that code is more than a
read may run (:func:`agent19.safety.readonly.check_relations_read`), once per relation and run.
"""

from __future__ import annotations

from agent19.config import AccessMode
from agent19.db.connection import Connection, Database
from agent19.migrate.patterns.sqlnames import ident
from agent19.safety import readonly
from agent19.sqltree import parse_json, walk


class ReadGuard:
    """The relations of one quality run whose planned code passed the guard (:meth:`scanned`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cleared: set[int] = set()

    def scanned(self, conn: Connection, text: str) -> None:
        """Refuse a built query (no user SQL, so not through the gate) when planning or reading the relations it
        names runs code their owners wrote that a read may not run (index expressions the planner folds, statistics
        objects, partition keys, CHECKs, policies: :func:`agent19.safety.readonly.check_relations_read`)."""
        names = sorted({".".join(ident(p) for p in (f.get("schemaname"), f.get("relname")) if p)
                        for tree in parse_json(text) for node, f in walk(tree) if node == "RangeVar"})
        oids = set(readonly.relation_oids(conn, names)) - self.cleared
        if not oids:
            return
        try:
            readonly.check_relations_read(conn, sorted(oids))
        except readonly.ReadOnlyViolation as exc:
            raise (exc if self.db.mode is AccessMode.READ_ONLY else exc.in_mode(self.db.mode.value)) from None
        self.cleared |= oids
