"""Lint, without a database, on cases written after other tools' documentation (tests/corpus/authors_cases.py).

The issue's bar: at least 95 % of the statements their authors call unsafe (block, rewrite, scan, lose data,
break clients) get a warning or an error, and at least 80 % of the forms they recommend get neither. A case is
judged as a whole (a nested BEGIN is flagged on the BEGIN, a new enum value used too early on the ALTER TYPE).
These cases were written after the rules, to measure them, not to tune them: a miss is reported by name.
"""

from __future__ import annotations

from agent19.migrate.lint.engine import lint_sql
from tests.corpus.authors_cases import CASES


def flagged(sql: str) -> list[str]:
    report = lint_sql(sql, pg_version=150000)
    return [f"{f.rule}/{f.severity}" for s in report.statements for f in s.findings if f.severity != "info"]


def test_the_cases_cover_each_source() -> None:
    sources = {src.split(":")[0].split(" ")[0] for src, _, _ in CASES}
    assert {"sm", "squawk", "eugene"} <= sources
    assert sum(label == "unsafe" for _, label, _ in CASES) >= 40 and sum(label == "safe" for _, label, _ in CASES) >= 20


def test_recall_on_unsafe_and_pass_rate_on_safe_forms() -> None:
    unsafe = [(src, sql) for src, label, sql in CASES if label == "unsafe"]
    safe = [(src, sql) for src, label, sql in CASES if label == "safe"]
    missed = [src for src, sql in unsafe if not flagged(sql)]
    alarms = [f"{src}: {flagged(sql)}" for src, sql in safe if flagged(sql)]
    recall = 1 - len(missed) / len(unsafe)
    passed = 1 - len(alarms) / len(safe)
    assert recall >= 0.95, f"recall {recall:.0%}; missed: {missed}"
    assert passed >= 0.80, f"safe forms passed {passed:.0%}; flagged: {alarms}"
