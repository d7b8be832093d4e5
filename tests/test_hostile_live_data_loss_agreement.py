"""A statement the live safety check finds lossy is lossy everywhere the plan and the runbook say so.

Found by a hostile review of issue 13: ``ALTER COLUMN price TYPE integer`` on a live ``numeric(10,2)``
column rounds every value. The plan's data-loss escalation said so (the safety check on the live
catalog), but the operation itself stayed ``data_loss: false`` with an "automatic" rollback by reverse
SQL, and the runbook built from it marked "Every step can be undone" and "Data loss is identified and
backed up" satisfied ("none loses data") under an escalation table naming the same step as data loss, and
rollback.sql gave the reverse ALTER as if it undid the step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import owner_login, run_sql

AGENT19 = (sys.executable, "-m", "agent19")  # the CLI of this checkout, whatever is on PATH

SCHEMA = """
CREATE TABLE "order" (id bigint PRIMARY KEY, price numeric(10,2) NOT NULL DEFAULT 1.55);
INSERT INTO "order" (id) SELECT g FROM generate_series(1, 200) g;
"""
SQL = 'ALTER TABLE "order" ALTER COLUMN price TYPE integer;'


def agent19(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT19, "--dsn", dsn, *args], capture_output=True, text=True, timeout=180)


def test_plan_marks_the_operation_lossy_not_only_the_escalation(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    r = agent19(app, "plan", "--sql", SQL, "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    plan = json.loads(r.stdout)
    assert [e["kind"] for e in plan["escalations"] if e["kind"] == "data_loss"] == ["data_loss"]
    assert plan["operations"][0]["data_loss"] is True
    assert plan["rollback"]["kind"] == "restore_from_backup"
    assert any("backup" in p for p in plan["prerequisites"])


def test_runbook_self_review_does_not_call_a_rounding_type_change_lossless(dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    r = agent19(app, "--handoff-dir", str(tmp_path / "h"), "runbook", "--sql", SQL, "--write", str(tmp_path / "rb"))
    assert r.returncode in (0, 1), r.stderr
    book = json.loads((tmp_path / "rb" / "runbook.json").read_text())
    assert any(e["kind"] == "data_loss" for e in book["escalations"])
    assert book["steps"][0]["data_loss"] is True
    review = {i["name"]: i for i in book["checklist"]}
    assert review["Every step can be undone"]["status"] == "not_satisfied", review["Every step can be undone"]
    assert review["Data loss is identified and backed up"]["status"] != "satisfied"
    gates = {i["name"]: i for i in book["gates"]}
    assert "destroys data" in gates["data integrity"]["evidence"]
    # rollback.sql's reverse ALTER restores the type, not the rounded values: it says so above the statement
    rollback = (tmp_path / "rb" / "rollback.sql").read_text()
    assert "come back only from the backup" in rollback.split("-- undo step 1")[1].split("ALTER TABLE")[0], rollback
