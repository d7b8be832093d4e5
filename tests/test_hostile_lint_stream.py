"""A hostile user's inputs to the streaming lint and its cached fixes (agent19.migrate.lint.rules._shape): the fix
text must be the one built from the statement's own names and types, whatever they are called."""

from __future__ import annotations

from agent19.migrate.lint.engine import lint_sql


def _fix(sql: str, code: str, pg_version: int = 150000) -> str:
    report = lint_sql(sql, pg_version=pg_version)
    fixes = [f.fix for s in report.statements for f in s.findings if f.rule == code]
    assert fixes, report
    return fixes[0]


def test_a_type_named_like_the_cache_placeholder_stays_that_type_in_the_fix():
    # by_names writes the finding's names into a template built with placeholder names a19x0q, a19x1q…; the new
    # type was written into the template as given, and the names written in replaced it as well
    fix = _fix("ALTER TABLE t ALTER COLUMN c TYPE a19x0q;", "A19005")
    assert "ADD COLUMN c_new a19x0q;" in fix
    assert "CAST(c AS a19x0q)" in fix
