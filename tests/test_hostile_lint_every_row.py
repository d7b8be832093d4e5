"""Lint reads "every row" as the safety check does: ``WHERE true`` is no WHERE.

Found by a hostile review of issue 13: ``DELETE FROM child WHERE true`` had no lint finding at all while
plan and safety classified it as deleting every row (data loss, restore from backup); likewise
``UPDATE … WHERE 1 = 1`` or ``WHERE id IS NOT NULL`` on a NOT NULL column escaped A19018's batching.
"""

from __future__ import annotations

import json
import subprocess
import sys

from agent19.migrate.lint.engine import lint_sql
from tests.conftest import one, owner_login, run_sql
from tests.test_lint_fix_sql import catalog_of, run_script

AGENT19 = (sys.executable, "-m", "agent19")  # the CLI of this checkout, whatever is on PATH


def rules(sql: str, **kw: object) -> set[str]:
    return {f.rule for s in lint_sql(sql, pg_version=150000, **kw).statements for f in s.findings}  # type: ignore[arg-type]


def test_a_where_true_for_every_row_is_flagged_offline() -> None:
    assert "A19017" in rules("DELETE FROM child WHERE true;")
    assert "A19017" in rules("DELETE FROM child c WHERE 1 = 1 OR c.id > 3;")
    assert "A19018" in rules("UPDATE child SET n = 0 WHERE 't'::boolean;")
    assert "A19017" not in rules("DELETE FROM child WHERE id > 5;")


def test_lint_plan_and_safety_agree_and_the_update_fix_runs(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, """CREATE TABLE "order" (id bigint PRIMARY KEY, "Amount" int NOT NULL DEFAULT 0);
                    INSERT INTO "order" (id) SELECT g FROM generate_series(1, 3000) g""")
    sql = 'UPDATE "order" SET "Amount" = 1 WHERE "Amount" IS NOT NULL;'
    report = lint_sql(sql, pg_version=150000, catalog=catalog_of(app))
    fixes = [f.fix for f in report.statements[0].findings if f.rule == "A19018"]
    assert len(fixes) == 1 and fixes[0] and "WHERE true" not in fixes[0]
    run_script(app, fixes[0])
    assert one(app, 'SELECT count(*) FROM "order" WHERE "Amount" = 1') == 3000
    r = subprocess.run([*AGENT19, "--dsn", app, "plan", "--sql", 'DELETE FROM "order" WHERE true;', "--format",
                        "json"], capture_output=True, text=True, timeout=120)
    plan = json.loads(r.stdout)
    assert plan["operations"][0]["data_loss"] is True
    assert {f["rule"] for f in plan["findings"]} >= {"A19017"}
