"""Running a checks file: one aggregate query per table, then the failing rows, named by key.

Per table, all column-level metrics (row_count, missing, invalid, freshness, sum/avg/min/max) come
from one scan; failing rows of a check are listed only when it warns or fails; duplicates, orphans
and custom SQL each need their own query. Every query runs in a ``READ ONLY`` transaction under the
session's ``statement_timeout`` (a timed-out query makes its checks ``error``, never ``pass``),
inside a savepoint so one failing query does not stop the others. The queries of a table share one
``REPEATABLE READ`` snapshot (two when some of its checks carry user SQL and others do not), so the
keys listed are the rows that were counted.

Safety: a query that contains user-written SQL (a ``filter``, a ``sql`` check) is admitted by the
one choke point, :func:`agent19.safety.gate.admit`, and runs through :func:`agent19.safety.gate.reader`
(the least-privilege reader login when one is configured). Queries built only from catalog names
(quoted identifiers, literals) run in the main login's READ ONLY transaction.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from agent19.db import rls
from agent19.db.connection import Connection, Database
from agent19.db.models import Table
from agent19.errors import Agent19Error
from agent19.etl import quality_sql as q
from agent19.etl.quality_guard import ReadGuard
from agent19.etl.quality_model import (
    COLUMN_METRICS,
    ChecksFile,
    CustomSql,
    Duplicates,
    Orphans,
    SchemaCheck,
    TableChecks,
)
from agent19.etl.quality_report import CheckResult, QualityReport, summarize, worst
from agent19.etl.quality_targets import Relation, find_relation, resolve_key
from agent19.safety import gate
from agent19.safety.run import jsonable


class _Run:
    def __init__(self, db: Database, max_keys: int) -> None:
        self.db = db
        self.max_keys = max_keys
        self.queries = 0
        self.timeout = f"{db.settings.statement_timeout_ms}ms"
        self.login: str | None = None
        self.guard = ReadGuard(db)  # the built queries' relations: their planned code is a read's

    # -- executing ------------------------------------------------------------------------
    @contextmanager
    def transaction(self, user_sql: bool) -> Iterator[Connection]:
        """The table's READ ONLY, REPEATABLE READ transaction, as the login user reads run as: scanning a table runs
        code its owner wrote (index expressions the planner folds, row level security policies), so a privileged
        login scans only when the user accepted it (``--allow-privileged-reads``; review r29 F8), user SQL or not."""
        gate.require_unprivileged_reader(self.db)
        with gate.reader(self.db) as conn:
            self.login = conn.info.user  # the reader login when user SQL is involved: the one a GRANT is for
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute(rls.EVERY_ROW)  # a read a policy would filter errors: never a pass on a subset
            yield conn

    def fetch(self, conn: Connection, query: sql.Composable | str, user_sql: bool) -> list[dict[str, Any]]:
        """Rows of one query, in a savepoint; admitted by the gate first when it holds user SQL."""
        text = query if isinstance(query, str) else query.as_string(conn)
        if user_sql:
            gate.admit(self.db, text, gate.Purpose.READ)
        else:
            self.guard.scanned(conn, text)
        self.queries += 1
        with conn.transaction(force_rollback=not user_sql):
            cur = conn.cursor()
            if not user_sql:
                # built from the catalog with every relation qualified: functions, aggregates and operators
                # resolve in pg_catalog only, so a search_path a database owner set cannot put theirs first
                cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            return list(cur.stream(text))

    def error_message(self, exc: BaseException) -> str:
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return f"cancelled by statement_timeout ({self.timeout}): the check did not finish, so it did not pass"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if rls.explains(exc):
            return self.db.redact(f"unknown - row-level security may hide rows from this login ({text}): {rls.HINT}")
        if isinstance(exc, psycopg.errors.InsufficientPrivilege) and (grant := _grant(text)):
            return self.db.redact(f"PostgreSQL: {text}: needs {grant} TO {self.login or '<login>'} (run by its "
                                  "owner or a superuser)")
        return self.db.redact(text if isinstance(exc, Agent19Error) else f"PostgreSQL: {text}")

    def keys(self, conn: Connection, listing: sql.Composable, width: int, user_sql: bool, limit: int | None = None
             ) -> tuple[int, list[Any]]:
        """(total failing rows, the first ``max_keys`` keys) in one query."""
        rows = self.fetch(conn, q.counted(listing, width, self.max_keys if limit is None else limit), user_sql)
        total = int(rows[0]["agent19_total"]) if rows else 0
        out = []
        for r in rows:
            values = [jsonable(v) for k, v in r.items() if k != "agent19_total"]
            out.append(values[0] if len(values) == 1 else values)
        return total, out


def _grant(text: str) -> str | None:
    """The GRANT a "permission denied for table t" asks for (PostgreSQL names the relation without its schema)."""
    m = re.match(r"permission denied for (table|view|materialized view|sequence|schema) (.+)$", text)
    if m is None:
        return None
    return f"GRANT USAGE ON SCHEMA {m[2]}" if m[1] == "schema" else f"GRANT SELECT ON {m[2]}"


def _threshold_text(check: Any) -> str | None:
    warn, fail = check.thresholds()
    parts = ([f"warn when {warn.text}"] if warn else []) + ([f"fail when {fail.text}"] if fail else [])
    if check.check == "freshness":
        parts.append("value in seconds since the newest row")
    return "; ".join(parts) or None


def judge(check: Any, value: float | None) -> tuple[str, str | None]:
    warn, fail = check.thresholds()
    if value is None:
        return ("fail" if fail else "warn"), "no value: no rows were measured"
    if fail and fail.holds(value):
        return "fail", None
    if warn and warn.holds(value):
        return "warn", None
    return "pass", None


def _result(check: Any, target: q.Target | None, table: str, **kw: Any) -> CheckResult:
    base: dict[str, Any] = {"check": check.display_name(), "kind": check.check, "table": table,
                            "threshold": _threshold_text(check)}
    if target is not None:
        base["key_columns"] = target.key
        base["sample"] = target.sample_note()
    return CheckResult(**(base | kw))


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Agent19Error(f"the value {str(value)[:40]!r} is not a number",
                           "sum/avg/min/max need a numeric column; use freshness for timestamps") from None


def _schema_result(conn: Connection, check: SchemaCheck, table: Table) -> CheckResult:
    problems = [f"column {c} is missing" for c in check.columns if table.column(c) is None]
    for name, expected in check.types.items():
        col = table.column(name)
        if col is None:
            problems.append(f"column {name} is missing (expected type {expected})")
            continue
        try:
            with conn.transaction():  # a savepoint: to_regtype raises on a malformed name
                row = conn.execute("SELECT pg_catalog.format_type(pg_catalog.to_regtype(%s::pg_catalog.text), NULL)"
                                   " AS t",
                                   (re.sub(r"\(.*?\)", "", expected),)).fetchone()
        except psycopg.errors.SyntaxError:
            row = None
        canonical = row["t"] if row else None
        if canonical is None:
            problems.append(f"type {expected!r} (for {name}) is not a type on this server")
            continue
        want_mod = re.search(r"\(([\d\s,]+)\)", expected)
        have_mod = re.search(r"\(([\d\s,]+)\)", col.type)
        have_base = re.sub(r"\([\d\s,]+\)", "", col.type)
        same = have_base == canonical and (want_mod is None or (have_mod is not None and
                                           want_mod.group(1).replace(" ", "") == have_mod.group(1).replace(" ", "")))
        if not same:
            problems.append(f"column {name} is {col.type}, expected {expected}")
    status, note = judge(check, len(problems))
    return _result(check, None, table.qualified_name, status=status, value=len(problems), details=problems,
                   message=note)


def _columns_of(check: Any) -> list[str]:
    """The table's columns a check names (the schema check reports missing ones itself)."""
    if isinstance(check, SchemaCheck | CustomSql):
        return []
    column = getattr(check, "column", None)
    return [column] if column else list(getattr(check, "columns", []))


def _run_table(run: _Run, relations: dict[str, Relation | None], name: str, spec: TableChecks
               ) -> list[CheckResult]:
    relation = relations[name]
    if relation is None:
        msg = (f"table {name} not found (as this login sees the catalog): give table or schema.table as "
               "`agent19 describe` lists them, without SQL quotes, or check the login's grants")
        return [_result(c, None, name, status="error", message=msg) for c in spec.checks]
    table = relation.table
    try:
        key, key_note = resolve_key(relation, spec.key)
        table_filter = q.condition(spec.filter, f"{name} (table)") if spec.filter else None
    except Agent19Error as exc:
        return [_result(c, None, table.qualified_name, status="error", message=exc.message) for c in spec.checks]
    check_filters: list[sql.Composable | None] = []
    early_errors: dict[int, str] = {}
    for i, c in enumerate(spec.checks):
        absent = [n for n in _columns_of(c) if table.column(n) is None]
        if absent:
            check_filters.append(None)
            early_errors[i] = f"column {', '.join(absent)} is not in {table.qualified_name}"
            continue
        try:
            check_filters.append(q.condition(c.filter, c.display_name()) if c.filter else None)
        except Agent19Error as exc:
            check_filters.append(None)
            early_errors[i] = exc.message
    seed = random.randint(1, 2**31 - 1)
    targets = {flag: q.Target(table=table, key=key, key_note=key_note, sample=spec.sample,
                              sample_method=spec.sample_method, seed=seed, filter=table_filter, user_sql=flag)
               for flag in (False, True)}
    results: dict[int, CheckResult] = {i: _result(spec.checks[i], targets[False], table.qualified_name,
                                                  status="error", message=m) for i, m in early_errors.items()}
    # Checks carrying user SQL (a filter, a sql check) go through the gate, as the reader login; the others
    # run as built from the catalog. Each group is one transaction, its column metrics one scan. A plain
    # view is someone's SQL too: the functions it calls run as the caller, so reading it is gated as well.
    groups: dict[bool, set[int]] = {False: set(), True: set()}
    for i, c in enumerate(spec.checks):
        if i not in results:
            groups[relation.kind == "view" or table_filter is not None or bool(c.filter)
                   or isinstance(c, CustomSql)].add(i)
    for flag, indices in groups.items():
        if indices:
            _run_group(run, relations, targets[flag], spec, check_filters, indices, results)
    return [results[i] for i in range(len(spec.checks))]


def _run_group(run: _Run, relations: dict[str, Relation | None], target: q.Target, spec: TableChecks,
               filters: list[sql.Composable | None], indices: set[int], results: dict[int, CheckResult]) -> None:
    tname = target.table.qualified_name
    try:
        with run.transaction(target.user_sql) as conn:
            _hidden_rows(conn, relations, target, spec, indices, results)
            _metrics(run, conn, target, spec, filters, indices, results)
            for i in sorted(indices - results.keys()):
                c = spec.checks[i]
                try:
                    results[i] = _row_check(run, conn, relations, target, c, filters[i])
                except (psycopg.Error, Agent19Error) as exc:
                    results[i] = _result(c, target, tname, status="error", message=run.error_message(exc))
    except (psycopg.Error, Agent19Error) as exc:  # the transaction could not start
        msg = run.error_message(exc)
        for i in indices:
            results.setdefault(i, _result(spec.checks[i], target, tname, status="error", message=msg))


def _hidden_rows(conn: Connection, relations: dict[str, Relation | None], target: q.Target, spec: TableChecks,
                 indices: set[int], results: dict[int, CheckResult]) -> None:
    """Checks that read rows a row-level security policy hides from the login (the table's, or an orphans
    check's referenced table's) are unknown: a count of the visible rows would pass on a subset."""
    def read(i: int) -> list[tuple[str, str]]:
        c = spec.checks[i]
        if isinstance(c, SchemaCheck):
            return []
        out = [(target.table.schema_name, target.table.name)]
        parent = relations.get(c.references_table) if isinstance(c, Orphans) else None
        return out + ([(parent.table.schema_name, parent.table.name)] if parent is not None else [])

    todo = {i: read(i) for i in sorted(indices - results.keys())}
    hidden = set(rls.hidden(conn, {t for tables in todo.values() for t in tables}))
    if not hidden:
        return
    for i, tables in todo.items():
        names = [n for n in (rls.relation_key(*t) for t in tables) if n in hidden]
        if names:
            results[i] = _result(spec.checks[i], target, target.table.qualified_name, status="error",
                                 message="unknown - " + rls.message(names[0]))


def _metrics(run: _Run, conn: Connection, target: q.Target, spec: TableChecks,
             filters: list[sql.Composable | None], indices: set[int], results: dict[int, CheckResult]) -> None:
    """The column-level metrics of ``indices`` from one aggregate query, then the failing keys."""
    todo = [(i, c) for i, c in enumerate(spec.checks) if i in indices and c.check in COLUMN_METRICS
            and i not in results]
    if not todo:
        return
    tname = target.table.qualified_name
    query = q.aggregate_query(target, [e for i, c in todo for e in q.metric_columns(i, c, filters[i])])
    rows: dict[int, dict[str, Any]] = {}
    try:
        row = run.fetch(conn, query, target.user_sql)[0]
        rows = {i: row for i, _ in todo}
    except (psycopg.Error, Agent19Error) as exc:
        if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.OperationalError) or len(todo) == 1:
            for i, c in todo:
                results[i] = _result(c, target, tname, status="error", message=run.error_message(exc),
                                     query=query.as_string(conn))
            return
        # One check broke the shared query (a type mismatch, say): measure each alone to name it.
        for i, c in todo:
            alone = q.aggregate_query(target, q.metric_columns(i, c, filters[i]))
            try:
                rows[i] = run.fetch(conn, alone, target.user_sql)[0]
            except (psycopg.Error, Agent19Error) as err:
                results[i] = _result(c, target, tname, status="error", message=run.error_message(err),
                                     query=alone.as_string(conn))
    for i, c in todo:
        if i not in rows:
            continue
        row = rows[i]
        try:
            value = _number(row[f"m{i}"])
        except Agent19Error as exc:
            results[i] = _result(c, target, tname, status="error", message=exc.message)
            continue
        if isinstance(value, float) and math.isnan(value):  # NaN compares false with every threshold in Python
            results[i] = _result(c, target, tname, status="error", query=query.as_string(conn),
                                 message="the measured value is NaN (the column holds NaN): no threshold can judge it")
            continue
        count = value if isinstance(value, int) else None
        if c.check.endswith("_percent"):
            count = int(value or 0)
            denominator = int(row[f"d{i}"] or 0)
            value = round(100.0 * count / denominator, 4) if denominator else 0.0
        status, note = judge(c, value)
        bad = q.failing_rows(c)
        listing = q.keys_query(target, filters[i], bad) if bad is not None else None
        rows_fail = bad is not None
        res = _result(c, target, tname, status=status, value=value,
                      message=(note or target.key_note) if rows_fail else note,
                      query=(listing or query).as_string(conn), failing_count=count if rows_fail else None)
        if listing is not None and status in ("warn", "fail") and count and target.key:
            try:
                total, keys = run.keys(conn, listing, len(target.key), target.user_sql)
                res.failing_keys, res.keys_capped = keys, total > len(keys)
            except (psycopg.Error, Agent19Error) as exc:
                res.message = f"the failing keys could not be listed: {run.error_message(exc)}"
        results[i] = res


def _row_check(run: _Run, conn: Connection, relations: dict[str, Relation | None], target: q.Target, check: Any,
               check_filter: sql.Composable | None) -> CheckResult:
    table = target.table
    if isinstance(check, SchemaCheck):
        return _schema_result(conn, check, table)
    note = target.key_note
    if isinstance(check, Duplicates):
        listing: sql.Composable | str = q.duplicates_query(target, check, check_filter)
    elif isinstance(check, Orphans):
        found = relations.get(check.references_table)
        if found is None:
            raise Agent19Error(f"referenced table {check.references_table} not found")
        parent = found.table
        pcols = check.references_columns or next((c.columns for c in parent.constraints if c.type == "primary_key"),
                                                 None)
        if not pcols or len(pcols) != len(check.columns):
            raise Agent19Error(f"{parent.qualified_name} has no primary key matching {len(check.columns)} column(s)",
                               "give references_columns")
        declared = any(c.type == "foreign_key" and c.columns == check.columns and c.references_table ==
                       parent.qualified_name for c in table.constraints)
        note = "; ".join(x for x in (note, None if declared else "no foreign key is declared for these columns") if x)
        listing = q.orphans_query(target, check, parent, pcols, check_filter)
    elif isinstance(check, CustomSql):
        statement = gate.admit(run.db, check.sql, gate.Purpose.READ)[0]
        listing = statement.sql
        note = "failing_keys are the rows the query returned"
    else:
        raise TypeError(check.check)
    if isinstance(listing, str):
        total, keys = run.keys(conn, sql.SQL(listing), 0, True)  # its rows in the query's own order
    elif target.key:
        total, keys = run.keys(conn, listing, len(target.key), target.user_sql)
    else:  # a view without a key: count only
        total, keys = run.keys(conn, listing, 0, target.user_sql, limit=1)[0], []
    status, judged = judge(check, total)
    query_text = listing if isinstance(listing, str) else listing.as_string(conn)
    return _result(check, target, table.qualified_name, status=status, value=total, failing_count=total,
                   failing_keys=keys if status != "pass" else [], keys_capped=total > len(keys) and status != "pass",
                   query=query_text, message=judged or note,
                   key_columns=[] if isinstance(listing, str) else target.key)


def run_checks(db: Database, checks: ChecksFile, *, max_keys: int = 100) -> QualityReport:
    """Run every check of ``checks``; errors become ``error`` results, never exceptions."""
    started = time.monotonic()
    run = _Run(db, max_keys)
    names = set(checks.tables) | {c.references_table for t in checks.tables.values() for c in t.checks
                                  if isinstance(c, Orphans)}
    with db.read() as conn:
        relations = {name: find_relation(conn, name) for name in sorted(names)}
    results: list[CheckResult] = []
    for name, spec in checks.tables.items():
        results += _run_table(run, relations, name, spec)
    summary = summarize(results, len(checks.tables), run.queries, time.monotonic() - started)
    return QualityReport(status=worst(results), checks=results, summary=summary)
