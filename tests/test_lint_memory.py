"""A large lint's memory stays small per statement: a report holds no finding's fix text (a type change's fix is
kilobytes of SQL) nor the commonest message until it is rendered, and the texts read and rendered are the same as
when they were written at once. Memory is measured with tracemalloc (bytes allocated, not timings)."""

from __future__ import annotations

import gc
import json
import tracemalloc
from dataclasses import asdict

from agent19 import records
from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint.engine import lint
from agent19.migrate.lint.rules._base import LazyText
from agent19.migrate.lint.rules.missing_lock_timeout import RULE as LOCK_TIMEOUT
from agent19.migrate.lint.rules.set_not_null_scan import not_null_fix
from agent19.migrate.lint.rules.type_change_rewrite import shadow_column_fix
from agent19.migrate.parse import release_trees
from agent19.tools.lint import render_json

TEMPLATES = (
    "ALTER TABLE t{i} ADD COLUMN c{i} integer;",
    "CREATE INDEX t{i}_idx ON t{i} (a);",
    "ALTER TABLE t{i} ALTER COLUMN a TYPE bigint;",
    "ALTER TABLE t{i} ALTER COLUMN b SET NOT NULL;",
    "UPDATE t{i} SET a = a + 1 WHERE id < 100;",
)


def _migration(n: int) -> str:
    return "\n".join(TEMPLATES[i % len(TEMPLATES)].format(i=i) for i in range(n))


def test_fixes_are_written_when_read_and_say_the_same():
    report = lint([load_text(_migration(10))], pg_version=150000)
    by_rule = {}
    for f in (f for s in report.statements for f in s.findings):
        by_rule.setdefault(f.rule, f)  # each rule's first finding
    assert {"A19012", "A19005", "A19006"} <= by_rule.keys()
    for code in ("A19012", "A19005", "A19006"):  # held as a recipe, not as text
        assert isinstance(by_rule[code].__dict__["fix"], LazyText), code
    assert isinstance(by_rule["A19012"].__dict__["message"], LazyText)  # the commonest finding's message too
    assert by_rule["A19012"].message.startswith("takes an AccessExclusiveLock on t0 with no lock_timeout")
    # read or rendered, each is the text its builder writes
    assert by_rule["A19005"].fix == shadow_column_fix("t2", None, 15, "a", "bigint", None)
    assert by_rule["A19006"].fix == not_null_fix("t3", "b", 15)
    assert by_rule["A19012"].fix.startswith("SET lock_timeout = '5s';") and LOCK_TIMEOUT.code == "A19012"
    assert by_rule["A19012"].fix.endswith("\nALTER TABLE t0 ADD COLUMN c0 integer;")
    rendered = json.loads("".join(render_json(report)))
    assert rendered == json.loads(records.dump_json(report))
    assert rendered["statements"][2]["findings"][0]["fix"] == by_rule["A19005"].fix
    assert asdict(report)["statements"][3]["findings"][0]["fix"] == by_rule["A19006"].fix


def test_a_large_reports_memory_per_statement_is_bounded():
    n = 2000
    lint([load_text(TEMPLATES[2].format(i=0))], pg_version=150000)  # imports and per-process caches first
    migration = load_text(_migration(n))
    gc.collect()
    tracemalloc.start()
    try:
        report = lint([migration], pg_version=150000)
        release_trees(migration.statements)  # as the CLI does once linted: what remains is the report
        del migration
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(report.statements) == n
    # ~1.7 kB a statement (its report, findings, other messages); texts held until rendering made it ~2.9 kB
    assert held / n < 2400, f"{held / n:.0f} bytes per linted statement"
