"""`agent19 lint --format json` is written a statement at a time (agent19.tools.lint.render_json): the same text as
pydantic's JSON of the report (agent19.records.dump_json: model_dump_json(indent=2), what it printed before lint
stopped importing pydantic), so a CI parser sees no difference."""

from __future__ import annotations

import json
import subprocess
import sys

from agent19 import records
from agent19.migrate.lint.engine import lint_sql
from agent19.tools.lint import render_json
from agent19.tools.registry import tools_of

SQL = """
CREATE TABLE "Ünïcode" (id int PRIMARY KEY, note varchar(20), meta json);
ALTER TABLE orders ALTER COLUMN id TYPE bigint;
ALTER TABLE orders ADD COLUMN n int NOT NULL;  -- agent19:ignore A19030
SELECT 'a "quoted"
line';
SELECT 'tab\there, bell \x07, unit \x1f, del \x7f, back\\slash, 😀 \u2028 \u00e9' AS "naïve";
"""


def test_parts_are_the_whole_dump():
    for sql in (SQL, "", "SELECT 1;"):
        report = lint_sql(sql, pg_version=150000)
        parts = list(render_json(report))
        assert len(parts) == len(report.statements) + 2
        assert "".join(parts) == records.dump_json(report)


def test_cli_prints_the_parts(tmp_path):
    (tmp_path / "m.sql").write_text(SQL)
    out = subprocess.run([sys.executable, "-m", "agent19", "lint", "m.sql", "--pg-version", "15", "--format", "json"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    report = lint_sql(SQL, pg_version=150000)
    assert json.loads(out.stdout)["summary"]["by_rule"] == report.summary.by_rule
    assert out.stdout.count('"rule":') == sum(len(s.findings) for s in report.statements) > 0
    spec = next(s for s in tools_of("lint") if s.command == "lint")
    assert spec.render(report, "json") == records.dump_json(report)
