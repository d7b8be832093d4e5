"""Lint against the labelled corpus: every statement that blocks or rewrites is flagged, no false alarm.

The corpus (tests/corpus/classify_corpus.py) is labelled by what the server shows — locks from
``pg_locks``, rewrites from ``relfilenode``, full reads under a blocking lock from
``pg_stat_xact_user_tables`` — and tests/test_classify_corpus.py re-observes every label on
PostgreSQL 15 and 16. Here the labels are mapped to the severities the issue defines:

* **long** (``rewrites`` or ``scans``): it blocks reads or writes of a populated, pre-existing table
  for a time that grows with the table, or rewrites it → at least one ``error``. Errors that are
  about something else (a rename or drop that breaks clients, a NOT NULL column that fails on a
  populated table: A19013, A19014, A19015, A19021) do not count as flagging it.
* **brief** (``blocks_writes`` but not long): the lock is held for an instant but must be waited
  for, and everything queues behind the wait → at least a ``warning`` (A19012 missing lock_timeout,
  or A19002 / A19026 for DROP INDEX / DETACH PARTITION), and no ``error`` from a rule about locks or
  rewrites. Errors from the rules above (data loss, broken clients) stay allowed: they are true.
* **safe** (neither): no ``error`` and no ``warning``; ``info`` (style) is allowed. REFRESH MATERIALIZED
  VIEW CONCURRENTLY counts as safe: its ExclusiveLock is on a view nobody writes (``NOBODY_WAITS``).

With the live catalog of the populated corpus database every label is decidable, and the mapping
must hold exactly. Without a catalog, lint may not know a column's type, a validated CHECK or a
table's size: it must still flag every long statement — a type change whose old type decides whether it
rewrites may be a ``warning`` that names that condition ("… unless it is varchar(m) with m ≤ 40 (assumed …)")
— and any extra ``error``/``warning`` it gives a brief or safe statement must say what it assumed (so that a
reader knows to connect a database).
"""

from __future__ import annotations

from typing import Any

import pytest

from agent19.db.models import SchemaSnapshot
from agent19.migrate.lint.engine import Finding, lint_sql
from tests.corpus.classify_corpus import CORPUS
from tests.test_classify_corpus import corpus_db as corpus_db  # noqa: F401 — the populated database

NOT_ABOUT_LOCKS = {"A19013", "A19014", "A19015", "A19021"}
"""Errors for broken clients or a failing statement: true, but not what flags a lock or rewrite."""
BRIEF_LOCK_WARNINGS = {"A19012", "A19002", "A19026"}
ASSUMED = ("assumed", "unknown", "connect a database", "--dsn")
NOBODY_WAITS = {"REFRESH MATERIALIZED VIEW CONCURRENTLY mv"}
"""Labelled ``blocks_writes`` (its ExclusiveLock conflicts with writes in general), but on a materialized
view, which nobody writes: only another REFRESH conflicts, readers go on. Judged as safe."""


def last_findings(sql: str, **options: Any) -> list[Finding]:
    report = lint_sql(sql + ";\n", **options)
    return report.statements[-1].findings


def judge(sql: str, blocks: bool, rewrites: bool, scans: bool, findings: list[Finding],
          live: bool) -> str | None:
    """What is wrong with ``findings`` for a statement with these labels, or None."""
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    shown = ", ".join(f"{f.rule}/{f.severity}" for f in findings) or "nothing"

    def unexplained(found: list[Finding]) -> list[Finding]:
        return found if live else [f for f in found if not any(a in f.message for a in ASSUMED)]

    if rewrites or scans:
        # without a catalog, a type change whose old type decides it is a warning naming that condition (issue 14)
        conditional = [] if live else [f for f in warnings if " unless " in f.message and "assumed" in f.message]
        if not [f for f in errors if f.rule not in NOT_ABOUT_LOCKS] and not conditional:
            return f"MISSED (long): {sql!r} got {shown}"
        return None
    lock_errors = unexplained([f for f in errors if f.rule not in NOT_ABOUT_LOCKS])
    if blocks and sql not in NOBODY_WAITS:
        if lock_errors:
            return f"FALSE ALARM (brief lock, not an error): {sql!r} got {shown}"
        if not warnings and not errors:
            return f"MISSED (brief lock, needs at least a warning): {sql!r} got {shown}"
        return None
    if lock_errors or unexplained(warnings) or unexplained([f for f in errors if f.rule in NOT_ABOUT_LOCKS]):
        return f"FALSE ALARM (safe): {sql!r} got {shown}"
    return None


def test_the_corpus_has_every_kind() -> None:
    long = [c for c in CORPUS if c[2] or c[3]]
    brief = [c for c in CORPUS if c[1] and not (c[2] or c[3]) and c[0] not in NOBODY_WAITS]
    safe = [c for c in CORPUS if not (c[1] and c[0] not in NOBODY_WAITS or c[2] or c[3])]
    assert len(CORPUS) >= 50 and len(long) >= 20 and len(brief) >= 15 and len(safe) >= 10


def test_lint_with_the_live_catalog_flags_exactly_what_the_server_shows(
        corpus_db: tuple[str, SchemaSnapshot]) -> None:  # noqa: F811
    _, catalog = corpus_db
    wrong = [problem for sql, *labels in CORPUS
             if (problem := judge(sql, *labels, last_findings(sql, catalog=catalog), live=True))]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("pg_version", [150000, 160000])
def test_lint_without_a_catalog_misses_nothing_and_says_what_it_assumed(pg_version: int) -> None:
    wrong = [problem for sql, *labels in CORPUS
             if (problem := judge(sql, *labels, last_findings(sql, pg_version=pg_version), live=False))]
    assert not wrong, "\n".join(wrong)


def test_brief_locks_need_only_a_lock_timeout() -> None:
    """With lock_timeout set, a brief lock on its own draws no warning about waiting (only its own rules)."""
    sql = "SET lock_timeout = '5s';\nALTER TABLE t ADD COLUMN c1 text"
    assert not [f for f in last_findings(sql, pg_version=160000) if f.severity != "info"]
    assert any(f.rule == "A19012" for f in last_findings("ALTER TABLE t ADD COLUMN c1 text", pg_version=160000))


def test_a_type_change_without_a_catalog_says_what_it_assumed() -> None:
    (finding,) = [f for f in last_findings("ALTER TABLE t ALTER COLUMN v TYPE text", pg_version=160000)
                  if f.rule == "A19005"]
    assert finding.severity == "warning"  # it rewrites unless the old type is varchar: the condition is named
    assert "unless it is varchar (any length) or text already" in finding.message
    assert "assumed: the old type is unknown - connect a database (--dsn) to know" in finding.message
    (bigint,) = [f for f in last_findings("ALTER TABLE t ALTER COLUMN v TYPE bigint", pg_version=160000)
                 if f.rule == "A19005"]
    assert bigint.severity == "error"  # no other type becomes bigint without a rewrite
    known = last_findings("CREATE TABLE t (v varchar(20));\nALTER TABLE t ALTER COLUMN v TYPE text", pg_version=160000)
    assert not [f for f in known if f.severity != "info"]


def test_a_coercible_type_change_on_a_checked_column_is_one_error_with_the_checks_in_the_fix(
        corpus_db: tuple[str, SchemaSnapshot]) -> None:  # noqa: F811
    _, catalog = corpus_db
    findings = last_findings("ALTER TABLE t ALTER COLUMN code TYPE varchar(40)", catalog=catalog)
    errors = [f for f in findings if f.severity == "error"]
    assert [f.rule for f in errors] == ["A19029"]
    assert errors[0].fix and "DROP CONSTRAINT t_code_check, ALTER COLUMN code TYPE varchar(40), ADD CONSTRAINT " \
        "t_code_check CHECK" in errors[0].fix and "VALIDATE CONSTRAINT t_code_check" in errors[0].fix


def test_drop_column_backup_names_the_primary_key(corpus_db: tuple[str, SchemaSnapshot]) -> None:  # noqa: F811
    _, catalog = corpus_db
    (live,) = [f for f in last_findings("ALTER TABLE t DROP COLUMN note", catalog=catalog) if f.rule == "A19014"]
    assert live.fix and "CREATE TABLE t_note_backup AS SELECT id, note FROM t;" in live.fix
    (nopk,) = [f for f in last_findings("ALTER TABLE nopk DROP COLUMN v", catalog=catalog) if f.rule == "A19014"]
    assert nopk.fix and "SELECT ctid, v FROM nopk" in nopk.fix and "no primary key" in nopk.fix
    (blind,) = [f for f in last_findings("ALTER TABLE t DROP COLUMN note", pg_version=160000) if f.rule == "A19014"]
    assert blind.fix and "SELECT <primary key>, note" in blind.fix and "--dsn" in blind.fix
