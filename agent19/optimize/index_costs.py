"""Costs of queries with candidate indexes in place: hypothetical ones (HypoPG) or real ones built inside a
savepoint that is always rolled back; the index advisor (:mod:`agent19.optimize.advisor`) measures with these.

Where HypoPG comes from — decided here:
* the extension is created in the database: hypothetical indexes live in the session only, so
  read-only mode works (the EXPLAINs run in a READ ONLY transaction);
* installed on the server but not created in the database: ``CREATE EXTENSION`` writes the catalog,
  so in read-only mode the advice says to have a DBA run it; in dry-run/execute mode agent19 creates
  it inside the transaction it advises in, which is always rolled back (HypoPG's functions work in
  the same transaction), so nothing is left behind;
* not installed on the server (e.g. the embedded one): in read-only mode the advice names the package
  to install and lists its unverified candidates, recommending none; in dry-run/execute mode each
  candidate is verified by building the real index inside a savepoint of a transaction that is always
  rolled back (CREATE INDEX under a ``statement_timeout``, plain EXPLAIN, ROLLBACK TO SAVEPOINT) —
  only on tables up to ``REAL_INDEX_MAX_TABLE_BYTES`` (a build holds a SHARE lock: writes to the table
  wait for it), the others' candidates stay unverified and the advice says so. ``Advice.verification``
  and each recommendation's ``verified_by`` say which method was used.
Queries with ``$n`` placeholders and no values are planned as generic plans (``PREPARE`` under
``plan_cache_mode = force_generic_plan``, which works on every supported version).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import RawCursor

from agent19 import tool_names
from agent19.config import AccessMode
from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import quoted
from agent19.optimize.candidates import Candidate
from agent19.safety import gate

REAL_BUILD_TIMEOUT_MS = 10_000
"""statement_timeout of each real CREATE INDEX built to verify a candidate."""


class HypoPGMissing(InputError):
    """HypoPG is not usable here; the message says what to do."""


Q_HYPOPG = """
SELECT (SELECT installed_version FROM pg_available_extensions WHERE name = 'hypopg') AS installed,
       EXISTS (SELECT FROM pg_available_extensions WHERE name = 'hypopg') AS available
"""


@contextmanager
def hypopg_session(db: Database, reads_only: bool = False) -> Iterator[tuple[Connection, str]]:
    """A transaction in which HypoPG works, and a sentence saying how (see the module docstring).

    ``reads_only``: every query only reads, so they are planned as the reader login (``--read-dsn``);
    planning a write needs its privileges, so writes are planned as the main login."""
    with db.read() as conn:
        row = conn.execute(Q_HYPOPG).fetchone()
    assert row is not None
    if row["installed"]:
        with (gate.reader(db) if reads_only else db.read()) as conn:
            try:
                yield conn, f"hypopg {row['installed']} (hypothetical indexes in this session only)"
            finally:
                conn.rollback()
                conn.execute("SELECT hypopg_reset()")  # hypothetical indexes outlive transactions
        return
    if not row["available"]:
        raise HypoPGMissing(
            "HypoPG is not installed on this server, so no index can be verified",
            "install the OS package postgresql-<version>-hypopg (the embedded server has no contrib "
            "extensions), then CREATE EXTENSION hypopg",
        )
    if not db.mode.allows(AccessMode.DRY_RUN):
        raise HypoPGMissing(
            "the hypopg extension is installed on the server but not created in this database",
            "have a DBA run CREATE EXTENSION hypopg, or "
            + ("run the command again with --mode dry-run" if tool_names.at_cli()
               else "restart agent19 with --mode dry-run")
            + " (it then creates it inside a transaction that is rolled back)",
        )
    with db.rolled_back() as conn:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION hypopg")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise HypoPGMissing(
                f"this login may not create the hypopg extension ({str(exc).strip().splitlines()[0]})",
                "hypothetical-index verification needs hypopg created in this database by an owner (a DBA runs "
                "CREATE EXTENSION hypopg), or CREATE on the database where hypopg is a trusted extension",
            ) from None
        yield conn, "hypopg created inside a transaction that was rolled back (nothing left behind)"


# -- costs -----------------------------------------------------------------------------------------------
_names = itertools.count()


def _max_param(sql: str) -> int:
    return max((int(m) for m in re.findall(r"\$(\d+)", sql)), default=0)


def plan_json(conn: Connection, sql: str, params: list[str] | None = None) -> dict[str, Any]:
    """The estimated plan (plain EXPLAIN, where hypothetical indexes are visible)."""
    nparams = _max_param(sql)
    with RawCursor(conn) as cur:
        if params or not nparams:
            cur.execute(f"EXPLAIN (FORMAT JSON) {sql}".encode(), params or None, prepare=False)  # type: ignore[arg-type]
            row = cur.fetchone()
        else:
            name = f"agent19_advise_{next(_names)}"
            cur.execute(b"SET LOCAL plan_cache_mode = force_generic_plan", prepare=False)
            cur.execute(f"PREPARE {name} AS {sql}".encode(), prepare=False)
            nulls = ", ".join(["NULL"] * nparams)
            cur.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})".encode(), prepare=False)
            row = cur.fetchone()
            cur.execute(f"DEALLOCATE {name}".encode(), prepare=False)
    assert row is not None
    value = row[0] if isinstance(row, (tuple, list)) else next(iter(row.values()))  # type: ignore[union-attr]
    data = value if isinstance(value, list) else json.loads(value)
    return data[0]["Plan"]  # type: ignore[no-any-return]


def _index_names(plan: dict[str, Any]) -> set[str]:
    names = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        names |= _index_names(child)
    return names


class BuildFailed(Exception):
    """A real index could not be built for verification (timeout, lock, error)."""


class Evaluator:
    """Costs of the workload's queries with a given set of indexes in place: hypothetical (HypoPG), or real
    ones built inside a savepoint that is always rolled back (``real``; no HypoPG, dry-run/execute mode)."""

    def __init__(self, conn: Connection, queries: list[tuple[str, float, list[str | None] | None]], *,
                 real: bool = False, build_timeout_ms: int = REAL_BUILD_TIMEOUT_MS):
        self.conn, self.queries, self.real, self.build_timeout_ms = conn, queries, real, build_timeout_ms

    def costs(self, indexes: list[Candidate]) -> tuple[list[float], set[str], dict[Candidate, int]]:
        if self.real:
            return self._real_costs(indexes)
        made: dict[Candidate, tuple[int, str]] = {}
        try:
            for cand in indexes:
                row = self.conn.execute("SELECT indexrelid, indexname FROM hypopg_create_index(%s)",
                                        (cand.definition(),)).fetchone()
                assert row is not None
                made[cand] = (row["indexrelid"], row["indexname"])
            costs, used = self._plans()
            sizes = {}
            for cand, (oid, _) in made.items():
                size = self.conn.execute("SELECT hypopg_relation_size(%s) AS s", (oid,)).fetchone()
                sizes[cand] = int(size["s"]) if size else 0
            return costs, {c.definition() for c, (_, n) in made.items() if n in used}, sizes
        finally:
            for oid, _ in made.values():
                self.conn.execute("SELECT hypopg_drop_index(%s)", (oid,))

    def _plans(self) -> tuple[list[float], set[str]]:
        costs, used = [], set()
        for sql, _, params in self.queries:
            plan = plan_json(self.conn, sql, params)
            costs.append(float(plan["Total Cost"]))
            used |= _index_names(plan)
        return costs, used

    def _real_costs(self, indexes: list[Candidate]) -> tuple[list[float], set[str], dict[Candidate, int]]:
        """CREATE INDEX → plain EXPLAIN → ROLLBACK TO SAVEPOINT: nothing stays, the SHARE lock on the table
        (writes wait, reads do not) ends with the savepoint, and ``statement_timeout`` bounds each build."""
        names: dict[Candidate, str] = {}
        sizes: dict[Candidate, int] = {}
        with self.conn.transaction(force_rollback=True):
            row = self.conn.execute("SELECT current_setting('statement_timeout') AS t").fetchone()
            session_timeout = row["t"] if row else "0"
            self.conn.execute(f"SET LOCAL statement_timeout = {int(self.build_timeout_ms)}")
            for cand in indexes:
                names[cand] = f"agent19_verify_{next(_names)}"
                try:
                    with self.conn.transaction():
                        self.conn.execute(cand.definition(name=names[cand]).encode())  # type: ignore[call-overload]
                except psycopg.Error as exc:
                    raise BuildFailed(str(exc).strip().splitlines()[0]) from None
                row = self.conn.execute("SELECT pg_relation_size(%s::regclass) AS s", (quoted(names[cand]),)
                                        ).fetchone()
                sizes[cand] = int(row["s"]) if row else 0
            # the EXPLAINs run under the session's own timeout again
            self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (session_timeout,))
            costs, used = self._plans()
        return costs, {c.definition() for c, n in names.items() if n in used}, sizes
