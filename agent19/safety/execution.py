"""Step 2's transaction: lock, count exactly, compare, spend the token, archive, run, commit.

One transaction on a dedicated session:

1. (after the token, see 3) ``LOCK TABLE … IN SHARE MODE`` on every table at stake: concurrent
   writes wait, reads go on. The statement then takes the lock it needs itself (ACCESS EXCLUSIVE
   for DROP/TRUNCATE, ROW EXCLUSIVE for DELETE/UPDATE), so nothing can change between the count and the statement.
2. Exact ``count(*)`` of each table under that lock (in block ranges with progress on big tables);
   any difference from the challenge's figures refuses. Cost: one sequential scan of each table while
   writers wait — ``tools/bench/bench_safety.py`` measures it on a 1M-row table.
3. The token's single use is recorded in ``agent19.confirmations`` (:mod:`~agent19.safety.ledger`),
   in this same transaction (first of all, so that two agent19 processes sharing the key queue on
   the token's row instead of deadlocking on the tables): if anything later fails or changed, the
   transaction rolls back and the token is not spent; two processes cannot both run it.
4. Archive-before-drop when asked, verified by row counts.
5. The statement. A measured write runs in a savepoint and is measured again: it must touch exactly
   what step 1 measured, or everything is rolled back.

Statements PostgreSQL refuses in a transaction (DROP DATABASE, … CONCURRENTLY) and work done another
way (a batched backfill: ``execute``) spend the token in a transaction of their own just before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pgsql

from agent19.safety import archive as archiving
from agent19.safety import kinds, ledger
from agent19.safety import measure as measuring
from agent19.safety.assess import Assessment
from agent19.safety.challenge import load_key
from agent19.safety.impact import Impact, exact_count, measure
from agent19.safety.run import QueryResult, run_write

if TYPE_CHECKING:
    from agent19.safety.protocol import Confirmation, Protocol, Report

QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
Q_LOCK = "LOCK TABLE {} IN SHARE MODE"
Q_HEAP = "SELECT pg_catalog.pg_relation_size(pg_catalog.to_regclass(%s)) AS b"


class Changed(Exception):
    """Something at stake changed since the challenge."""


def run(p: Protocol, a: Assessment, report: Report, claims: dict[str, Any], channel: str | None, max_rows: int,
        execute: Callable[[], None] | None) -> Confirmation:
    from agent19.safety.protocol import Confirmation, changes

    st = a.st
    assert a.impact is not None
    impact: Impact | None = a.impact
    used: str | None = None
    archived: list[archiving.ArchiveResult] = []
    result: QueryResult | None = None
    conn = p.db.connect()
    try:
        ledger.ensure(conn)
        if execute is not None or kinds.runs_outside_transaction(st):
            with conn.transaction():
                used = ledger.claim(conn, claims["nonce"], claims["exp"], channel, load_key(p.settings))
                if a.measured is None:
                    impact = measure(conn, a.findings, bool(st.fields.get("missing_ok")), p.progress)
                    if impact.figures() != claims["impact"]:
                        raise Changed(changes(claims["impact"], impact.figures()))
            if execute is not None:
                execute()
            else:
                result = run_write(conn, st.sql, st, max_rows, "committed (outside a transaction block)")
        else:
            with conn.transaction():
                # the token first: a second agent19 with the same token waits here for this transaction's
                # end, then finds it used (taking the table locks first could deadlock the two)
                used = ledger.claim(conn, claims["nonce"], claims["exp"], channel, load_key(p.settings))
                _lock(conn, a)
                if a.measured is None:
                    impact = measure(conn, a.findings, bool(st.fields.get("missing_ok")), p.progress)
                    if impact.figures() != claims["impact"]:
                        raise Changed(changes(claims["impact"], impact.figures()))
                else:
                    _recount(conn, a, p)
                archived = archiving.run(conn, a.plans if a.archive else [])
                result = _statement(conn, a, max_rows)
    except (Changed, ledger.NotApproved, ledger.AlreadyUsed) as exc:
        reason = _refusal(exc)
        p.audit.append("refused", st, a.findings, impact, reason=reason)
        return Confirmation(outcome="refused", mode=p.settings.mode, reasons=[reason], report=report)
    except (psycopg.Error, archiving.ArchiveMismatch) as exc:
        code = getattr(exc, "sqlstate", None) or type(exc).__name__
        p.audit.append("failed", st, a.findings, impact, reason=f"error {code}; rolled back", channel=used or channel)
        raise
    finally:
        conn.close()
    p.audit.append("executed", st, a.findings, impact, channel=used, archived=[x.model_dump() for x in archived],
                   rows_affected=result.row_count if result else None)
    report.token = None
    return Confirmation(outcome="executed", executed=True, mode=p.settings.mode, channel=used, report=report,
                        archived=archived, result=result)


def _refusal(exc: Exception) -> str:
    """Why step 2 refused, for the caller and the audit log (nothing was run)."""
    if isinstance(exc, Changed):
        return f"the impact changed since the challenge: {exc}; nothing was run; ask for a new challenge"
    if isinstance(exc, ledger.NotApproved):
        return "not confirmed by a human yet; nothing was run"
    return "the token was already used (by another attempt, perhaps another agent19); ask for a new challenge"


def _lock(conn: Any, a: Assessment) -> None:
    assert a.impact is not None
    # a system catalog (large objects: agent19.safety.measure) is not locked: its measurement is compared instead
    names = sorted({t.name for t in a.impact.targets if t.kind in {"table", "column"} and t.exists
                    and not t.name.startswith("pg_catalog.")})
    for name in names:
        schema, _, table = name.partition(".")
        conn.execute(pgsql.SQL(Q_LOCK).format(pgsql.Identifier(schema, table)))


def _recount(conn: Any, a: Assessment, p: Protocol) -> None:
    """A measured write: the tables it touched must still have exactly the rows measured in step 1."""
    assert a.measured is not None
    for t in a.measured.touches:
        if t.rows_before is None:
            continue  # not countable by this login: the statement's own measurement is compared instead
        schema, _, table = t.table.partition(".")
        heap = conn.execute(Q_HEAP, (pgsql.Identifier(schema, table).as_string(conn),)).fetchone()["b"]
        if heap is None:
            raise Changed(f"{t.table} no longer exists")
        rows = exact_count(conn, schema, table, heap, p.progress)
        if rows != t.rows_before:
            raise Changed(f"{t.table} rows {t.rows_before} -> {rows}")


def _statement(conn: Any, a: Assessment, max_rows: int) -> QueryResult:
    if a.measured is None or a.measured.unmeasured:  # confirmed as it is, or as not measurable: nothing to compare
        return run_write(conn, a.st.sql, a.st, max_rows, "committed")
    result, now = measuring.run_measured(conn, a.st, max_rows, "committed")
    # outside: step 1's trial only; earlier: what agent19 removed before step 1, the reason it was challenged
    if now.figures() != a.measured.model_copy(update={"outside": [], "earlier": []}).figures():
        seen = ", ".join(f"{t.table}: {t.deleted} deleted, {t.updated} updated" for t in now.touches) or "no rows"
        raise Changed(f"measured again under the lock, the statement touches other rows than in step 1 ({seen})")
    return result
