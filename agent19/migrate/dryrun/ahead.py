"""Re-observing hidden locks ahead: in the early scratch database, while the target's transaction still runs.

A statement whose lock mode an earlier statement already took is re-observed in a transaction of its own in
a scratch database where the earlier statements were committed (:mod:`agent19.migrate.dryrun.outside_transaction`).
Which statements need it is known for sure only once the target has run them — but the prediction says
which will (:func:`predicted_hidden`), and replaying the migration on an empty schema copy does not depend
on the target. So when the scratch database is needed only for that, :class:`AheadReplay` replays the
statements there, re-observes the predicted ones and drops the database in a thread of its own, while the
target's transaction runs: its cost — above all ``DROP DATABASE``, which forces a checkpoint — is then
hidden behind the target's statements instead of added after them.

The same goes for statements that cannot run in a transaction block (``CREATE INDEX CONCURRENTLY``…) when
the scratch database is a schema-only or empty copy (asked for with ``scratch_copy``: their durations there
say nothing about the real table, so nothing is lost by running them while the target's statements run):
they are watched there from other sessions (:func:`agent19.migrate.dryrun.watch.watch_statement`) exactly as
after the rollback. A ``TEMPLATE`` copy, made for real durations, still waits for the rollback.

Afterwards :meth:`AheadReplay.apply` keeps the result only where it is exactly what the replay after the
rollback would have found: the statements observed there as hidden are among those re-observed ahead, the
statements that needed the scratch database are exactly those watched ahead, and the statements replayed
are exactly those the target did not skip. Otherwise it returns None and the dry run replays after the
rollback as before (a misprediction costs a second scratch database, never a different result).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from agent19.db.models import SchemaSnapshot
from agent19.migrate.dryrun.compare import predicted_locks, rank
from agent19.migrate.dryrun.early_scratch import EarlyScratch
from agent19.migrate.dryrun.model import ScratchInfo, StatementResult
from agent19.migrate.dryrun.outside_transaction import _apply, _extrapolate, _isolated, _replay, _tables
from agent19.migrate.dryrun.scratch import ScratchDatabase, replay_session
from agent19.migrate.dryrun.watch import Watched, watch_statement
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement


def predicted_hidden(statements: list[Statement], preds: dict[int, list[Operation]]) -> set[int]:
    """Statements predicted to take on a relation a mode no stronger than one an earlier statement took there
    (hidden in pg_locks: re-observed in a transaction of their own)."""
    strongest: dict[str, int] = {}
    hidden: set[int] = set()
    for stmt in statements:
        if stmt.node == "TransactionStmt":
            continue
        mine = predicted_locks(preds.get(stmt.index, []))
        if any(strongest.get(rel, -1) >= rank(mode) for rel, mode in mine.items()):
            hidden.add(stmt.index)
        for rel, mode in mine.items():
            strongest[rel] = max(strongest.get(rel, -1), rank(mode))
    return hidden


class AheadReplay:
    """Replays ``statements`` in ``early``'s scratch database up to the last predicted hidden one or the last of
    ``outside`` (those that cannot run in a transaction block; never the ``skipped`` ones: transaction control,
    cluster-wide, refused), re-observing the hidden ones and watching those ``outside``; then drops it."""

    def __init__(self, early: EarlyScratch, statements: list[Statement], hidden: set[int], skipped: set[int],
                 statement_timeout_ms: int, outside: set[int] | None = None,
                 preds: dict[int, list[Operation]] | None = None) -> None:
        self.early, self.statements, self.hidden, self.skipped = early, statements, hidden, skipped
        self.outside, self.preds = outside or set(), preds or {}
        self.timeout = statement_timeout_ms
        self.observed: dict[int, StatementResult] = {}
        self.watched: dict[int, Watched] = {}
        self.scratch: ScratchDatabase | None = None
        self.notes: list[tuple[int, bool, str]] = []  # (statement, while replaying it, the note)
        self.replayed: set[int] = set()
        self.info: ScratchInfo | None = None
        self.error: BaseException | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()  # waited for, not joined: see EarlyScratch._created
        self._thread = threading.Thread(target=self._run, name="agent19-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = max(self.hidden | self.outside)
        try:
            with self.early.use([], 0) as scratch:
                self.scratch = scratch
                self.info = ScratchInfo(name=scratch.name, strategy=scratch.strategy,
                                        sampled_rows=scratch.sampled_rows, notes=list(scratch.notes), dropped=False)
                with self.early.take_session() or replay_session(scratch.dsn, self.timeout) as conn:
                    self._conn = conn
                    for stmt in self.statements[: last + 1]:
                        if self._stop.is_set():
                            raise InterruptedError("the dry run ended before the replay ahead")
                        if stmt.index not in self.skipped:
                            self._one(conn, stmt, last)
            self.info.dropped = self.early.dropped
        except BaseException as exc:  # noqa: BLE001 — the dry run then replays after the rollback, as before
            self.error = exc
        finally:
            self._ended.set()

    def _one(self, conn: psycopg.Connection[Any], stmt: Statement, last: int) -> None:
        self.replayed.add(stmt.index)
        replaying = False
        if stmt.index in self.outside:  # as after the rollback: its own statement, watched from other sessions
            assert self.scratch is not None
            self.watched[stmt.index] = watch_statement(
                self.scratch.dsn, stmt.sql, _tables(stmt, self.preds.get(stmt.index, [])),
                statement_timeout_ms=self.timeout)
            return
        try:
            if stmt.index in self.hidden:
                shadow = StatementResult(index=stmt.index, file=stmt.file, line=stmt.line, sql=stmt.sql,
                                         ran_in="scratch")
                _isolated(conn, shadow, stmt)
                self.observed[stmt.index] = shadow
                if stmt.index == last:
                    return  # nothing comes after it here: committing it too would only cost its time
            replaying = True
            if wrote := _replay(conn, stmt):
                self.notes.append((stmt.index, True, f"statement {stmt.index + 1} wrote {', '.join(wrote)} "
                                   "(cluster-wide) in the scratch database: rolled back there, not replayed"))
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.notes.append((stmt.index, replaying,
                               f"replaying statement {stmt.index + 1} in the scratch database failed: {first}"))

    def join(self, cancel: bool = False) -> None:
        """Wait for the replay (and the drop) to end; with ``cancel`` (the dry run is failing or interrupted),
        the statement running there is cancelled and no other starts, and a scratch database still being made is
        not waited for (:meth:`EarlyScratch.cancel`)."""
        if cancel:
            self._stop.set()
            self.early.cancel()
            if (conn := self._conn) is not None and not conn.closed:
                conn.cancel_safe()
        self._ended.wait()

    def apply(self, results: list[StatementResult], isolate: list[int], scratch_needed: list[int],
              before: SchemaSnapshot) -> ScratchInfo | None:
        """Fill the re-observed statements of ``results`` (those the target found hidden: ``isolate``) and those
        that needed the scratch database (``scratch_needed``), and return the scratch database's part of the
        result — or None when this replay is not what the replay after the rollback would have been (the caller
        then does that one)."""
        self.join()
        if (self.error is not None or self.info is None or self.scratch is None or not (isolate or scratch_needed)
                or not set(isolate) <= self.hidden or set(scratch_needed) != self.outside):
            return None
        last = max(isolate + scratch_needed)
        if self.replayed & set(range(last + 1)) != {r.index for r in results[: last + 1] if r.ran_in != "skipped"}:
            return None  # the target skipped a statement at run time (it wrote a shared catalog): not the same
        for i in isolate:
            if (seen := self.observed.get(i)) is not None:
                results[i].locks, results[i].isolated, results[i].held_before = seen.locks, True, []
        for i in scratch_needed:
            stmt = self.statements[i]
            _apply(results[i], self.watched[i], stmt, self.scratch)
            _extrapolate(results[i], self.scratch, _tables(stmt, self.preds.get(i, [])), before)
        # after the rollback the last re-observed statement would not have been replayed: nor its notes
        self.info.notes += [note for i, replaying, note in self.notes if i < last or (i == last and not replaying)]
        return self.info
