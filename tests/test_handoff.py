"""Handoff schema, evidence rules, the dry-run seam and the recipients' views — no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from agent19.migrate.planning.model import Change, ColumnSpec
from agent19.migrate.planning.plan import PlanOptions, plan_migration
from agent19.report.build import ReportOptions, build_report
from agent19.report.model import DryRunEvidence, DryRunStatement, ReviewItem
from agent19.report.render import documents
from agent19.report.schema import handoff_schema, shipped_schema
from agent19.tools.runbook import dry_run_evidence

ROOT = Path(__file__).parent.parent
MIGRATION = """ALTER TABLE users ADD COLUMN nickname text;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at);
ALTER TABLE users DROP COLUMN legacy_code;
"""


def _report(sql: str = MIGRATION, **kw):
    return build_report(plan_migration(sql=sql, options=PlanOptions(pg_version=15)), **kw)


def test_committed_schemas_equal_the_model():
    assert shipped_schema() == handoff_schema(), "run: python -m agent19.report.schema"
    published = json.loads((ROOT / "handoffs" / "handoff.schema.json").read_text())
    assert published == handoff_schema(), "run: python -m agent19.report.schema"
    assert "handoff.schema.json" in (ROOT / "handoffs" / "README.md").read_text()


def test_schema_rejects_a_malformed_handoff():
    handoff = json.loads(documents(_report())["handoff.json"])
    jsonschema.validate(handoff, shipped_schema())
    handoff["steps"][0]["downtime"] = "a little"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(handoff, shipped_schema())


def test_nothing_is_satisfied_without_evidence():
    with pytest.raises(ValidationError, match="without evidence"):
        ReviewItem(name="Rollback tested", status="satisfied", evidence="  ")
    report = _report()
    items = report.runbook.checklist
    assert len(items) == 13 and {g.name for g in report.runbook.gates} == {
        "schema", "data integrity", "performance", "application", "rollback"}
    assert all(i.evidence for i in items + report.runbook.gates)
    by_name = {i.name: i for i in items}
    # no database and no dry run: never observed, so never satisfied
    assert by_name["Locks observed on a real server"].status == "unknown"
    assert by_name["Table sizes are known"].status == "unknown"
    assert "--dsn" in by_name["Table sizes are known"].evidence
    assert by_name["Every step can be undone"].status == "not_satisfied"
    spec = documents(report)["specification.md"]
    assert "| dry run (test_migration) | not run | not run | not run |" in spec


def test_a_dry_run_result_is_cited_with_its_figures():
    dry = dry_run_evidence({
        "ran_at": "2026-11-20T10:00:00Z", "environment": "PostgreSQL 16 scratch copy", "passed": True,
        "total_seconds": 1.25, "rollback_verified": True, "longest_lock": "AccessExclusiveLock on users, 0.8 s",
        "statements": [DryRunStatement(order=2, seconds=0.8, observed_lock="AccessExclusiveLock",
                                       predicted_lock="AccessExclusiveLock", agrees=True).model_dump()],
    })
    report = _report(dry_run=dry)
    gates = {g.name: g for g in report.runbook.gates}
    assert gates["rollback"].status == "satisfied"
    assert "2026-11-20T10:00:00Z" in gates["rollback"].evidence and "identical" in gates["rollback"].evidence
    assert gates["schema"].status == "satisfied"
    step2 = report.runbook.steps[1]
    assert step2.lock_source == "observed" and step2.estimated_time == "observed 0.800 s in the dry run"
    spec = documents(report)["specification.md"]
    assert "PostgreSQL 16 scratch copy (2026-11-20T10:00:00Z) | passed; rollback verified | 1.250 s total" in spec
    failed = _report(dry_run=DryRunEvidence(environment="scratch", passed=False, rollback_verified=False,
                                            rollback_differences=["index users_created_at_idx missing"]))
    gates = {g.name: g for g in failed.runbook.gates}
    assert gates["schema"].status == "not_satisfied" and gates["rollback"].status == "not_satisfied"
    assert "users_created_at_idx missing" in gates["rollback"].evidence


def test_a_bad_dry_run_result_is_an_input_error():
    from agent19.errors import InputError

    with pytest.raises(InputError, match="not a dry-run result"):
        dry_run_evidence({"passed": "maybe"})


def test_security_review_flags_personal_data_grants_rls_definer_and_extensions():
    sql = """CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, phone_number text, last_seen_ip inet,
                        date_of_birth date, plan text);
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON customers USING (id = current_setting('app.customer_id')::bigint);
GRANT SELECT, INSERT ON customers TO app_rw;
CREATE FUNCTION customer_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM customers $$;
"""
    report = _report(sql)
    sec = report.handoff.security
    assert {p.column for p in sec.personal_data} == {"email", "phone_number", "last_seen_ip", "date_of_birth"}
    assert sec.grants == ["GRANT select, insert ON customers TO app_rw"]
    assert len(sec.row_level_security) == 2
    assert sec.security_definer and "customer_count" in sec.security_definer[0]
    assert sec.extensions and "pgcrypto" in sec.extensions[0]
    text = documents(report)["security.md"]
    assert "`customers.email` (text), new table: looks like an email address" in text


def test_application_handoff_names_writes_that_can_fail_and_the_deploy_between_phases():
    app = _report().handoff.application
    fails = {c.change for c in app.changes if c.writes_can_fail}
    assert fails == {"column email becomes NOT NULL", "column legacy_code dropped"}
    assert [(p.name, p.steps, p.deploy_after) for p in app.phases] == [("expand", [1, 3], True),
                                                                         ("contract", [2, 4], False)]
    assert "split it" in app.phases[1].note
    assert "unknown whether the project uses Prisma" in app.prisma_note


def test_a_change_list_from_an_upstream_agent_becomes_a_runbook():
    changes = [Change(type="add_column", table="orders", column=ColumnSpec(name="note", type="text")),
               Change(type="add_index", table="orders", index_columns=["note"])]
    plan = plan_migration(changes=changes, options=PlanOptions(pg_version=15))
    report = build_report(plan, options=ReportOptions(requirements="Sales wants notes on orders."))
    assert "Requested for: Sales wants notes on orders." in report.specification.summary
    assert all(s.verification for s in report.runbook.steps)
    assert "CONCURRENTLY" in documents(report)["migration.sql"]
