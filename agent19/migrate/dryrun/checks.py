"""The dry run's validation checks (the plan's ``before``/``after`` queries, run in its transaction) and its refusal
of a standby, which refuses every write."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from agent19.errors import InputError
from agent19.migrate.dryrun.model import CheckResult
from agent19.migrate.planning.model import ValidationCheck


def _expected_literal(expected: str) -> str | None:
    token = expected.strip().split(" ", 1)[0].split("(", 1)[0].strip().lower()
    if re.fullmatch(r"-?\d+(\.\d+)?|true|false|t|f", token):
        return {"t": "true", "f": "false"}.get(token, token)
    return None


def run_check(conn: psycopg.Connection[Any], check: ValidationCheck) -> CheckResult:
    """Run one check under a savepoint: passes when the first value equals ``expected``'s leading literal
    (``0``, ``1``, ``true``…), or, when ``expected`` is only words, when that value is true/non-zero."""
    value, error = None, None
    try:
        with conn.transaction():
            row = conn.execute(check.query).fetchone()
        first = None if row is None else (next(iter(row.values())) if isinstance(row, dict) else row[0])
        value = None if row is None else ("true" if first is True else "false" if first is False else str(first))
    except psycopg.Error as exc:
        error = str(exc).strip().splitlines()[0]
    literal = _expected_literal(check.expected)
    if error:
        passed = False
    elif literal is not None:
        passed = value == literal
    else:
        passed = value not in (None, "false", "0", "None")
    return CheckResult(name=check.name, query=check.query, expected=check.expected, blocking=check.blocking,
                       phase=check.phase, passed=passed, value=value, error=error)


def refuse_standby(conn: psycopg.Connection[Any], what: str) -> None:
    """A hot standby refuses every write, even in a transaction rolled back: testing there proves nothing."""
    row = conn.execute("SELECT pg_is_in_recovery() AS standby").fetchone()
    if row and (row["standby"] if isinstance(row, dict) else row[0]):
        raise InputError(f"{what}: this server is a standby (in recovery), which refuses every write, so the "
                         "migration cannot be tried here", "point --dsn at the primary (`agent19 replication` "
                         "says which server is which)")
