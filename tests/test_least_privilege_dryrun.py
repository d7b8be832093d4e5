"""Dry runs as the roles production uses: the owning application role with and without CREATEDB.

The oracle is the superuser's dry run of the same migration on the same schema. A non-superuser may
know less (no scratch database to re-observe a lock an earlier statement already holds, no TEMPLATE
copy…), but then it must say so ("not re-observed", "could not test: …"): it may never report a lock,
a mismatch or a failure that the superuser's run contradicts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.migrate.classification.knowledge_table import KNOWLEDGE
from agent19.migrate.dryrun.model import DryRunResult
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from agent19.report.model import DryRunEvidence
from tests.conftest import session_settings
from tools.throwaway import ThrowawayServer

SCHEMA = (Path(__file__).parent / "corpus" / "observed_schema.sql").read_text()
# Takes ACCESS EXCLUSIVE on t first: every later lock of that mode on t is hidden in pg_locks.
PRIMER = "ALTER TABLE t ADD COLUMN primer int"


@dataclass
class Owners:
    server: ThrowawayServer
    dsns: dict[str, str]  # "superuser" / "owner_createdb" / "owner" -> DSN of its own populated database

    def database(self, who: str) -> Database:
        return Database(session_settings(dsn=self.dsns[who], mode=AccessMode.DRY_RUN))


@pytest.fixture(scope="module")
def owners(pg: ThrowawayServer) -> Iterator[Owners]:
    suffix = uuid.uuid4().hex[:8]
    roles = {"owner_createdb": f"lp_c_{suffix}", "owner": f"lp_n_{suffix}"}
    dsns: dict[str, str] = {}
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for who, role in roles.items():
            conn.execute(f"CREATE ROLE {role} LOGIN {'CREATEDB' if who == 'owner_createdb' else ''}")
            conn.execute(f"CREATE DATABASE {role} OWNER {role}")
            dsns[who] = make_conninfo(pg.dsn, user=role, dbname=role)
        conn.execute(f"CREATE DATABASE lp_s_{suffix}")
        dsns["superuser"] = pg.dsn_for(f"lp_s_{suffix}")
    for dsn in dsns.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        # an extension only a superuser may create, as production databases have
        with psycopg.connect(make_conninfo(dsn, user="postgres"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        yield Owners(pg, dsns)
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for dsn in dsns.values():
                name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in roles.values():
                conn.execute(f"DROP ROLE IF EXISTS {role}")


def run(owners: Owners, who: str, sql: str, **kwargs: object) -> DryRunResult:
    db = owners.database(who)
    try:
        db.execute_read("SELECT 1")  # a warm pool, as in a running server: its sessions sit on the target
        return dry_run(db, parse_sql(sql), **kwargs)  # type: ignore[arg-type]
    finally:
        db.close()


def contradictions(truth: DryRunResult, other: DryRunResult) -> list[str]:
    """Everything ``other`` claims that the superuser's run (``truth``) does not."""
    out = []
    if truth.passed and not other.passed:
        out.append(f"FAILED where the superuser passed: {other.summary}")
    for a, b in zip(truth.statements, other.statements, strict=True):
        seen = {c.relation: c for c in a.lock_comparison}
        for c in b.lock_comparison:
            if c.observed is None and c.agrees is None:
                assert c.not_observed, f"statement {b.index + 1}: {c} is unknown without saying why"
                continue
            t = seen.get(c.relation)
            if t is None or (t.observed, t.agrees) != (c.observed, c.agrees):
                out.append(f"statement {b.index + 1} ({b.sql}): {c} but the superuser saw {t}")
        if b.error and not a.error:
            out.append(f"statement {b.index + 1}: error {b.error.message} where the superuser had none")
        if b.strongest is not None and b.strongest != a.strongest:
            out.append(f"statement {b.index + 1}: strongest lock {b.strongest}, superuser {a.strongest}")
    mine = {f.message for f in other.findings if f.kind in ("lock_mismatch", "rewrite_mismatch")}
    theirs = {f.message for f in truth.findings if f.kind in ("lock_mismatch", "rewrite_mismatch")}
    out += [f"mismatch the superuser did not find: {m}" for m in sorted(mine - theirs)]
    # what the runbook and handoffs cite: never a partial observation
    ev_t = DryRunEvidence.model_validate(truth.to_evidence())
    ev_o = DryRunEvidence.model_validate(other.to_evidence())
    for a_ev, b_ev in zip(ev_t.statements, ev_o.statements, strict=True):
        if b_ev.observed_lock is not None and b_ev.observed_lock != a_ev.observed_lock:
            out.append(f"evidence step {b_ev.order}: observed {b_ev.observed_lock}, superuser {a_ev.observed_lock}")
        if b_ev.observed_lock is None and a_ev.observed_lock is not None:
            assert b_ev.not_observed, f"evidence step {b_ev.order} drops the lock without saying why"
    return out


# A representative third of the knowledge table's in-transaction rows that act on table t.
ROWS = [r for r in KNOWLEDGE if r.example and r.in_transaction and r.example_error is None
        and r.versions[0] <= 15 <= r.versions[1] and " t " in f" {r.example} ".replace("(", " ")][::3]


def test_observed_knowledge_after_a_lock_is_held_matches_the_superuser(owners: Owners) -> None:
    """Each row's example after a statement that already holds ACCESS EXCLUSIVE on t: the superuser and
    the owner with CREATEDB re-observe it in a scratch database; the owner without CREATEDB says
    'already held since statement 1; not re-observed' — and nobody contradicts the superuser."""
    assert len(ROWS) >= 8
    problems: dict[str, list[str]] = {}
    unknown = 0
    for row in ROWS:
        sql = f"{PRIMER};\n{row.example.rstrip().rstrip(';')};\n"
        truth = run(owners, "superuser", sql)
        assert truth.complete or truth.statements[1].error, (truth.summary, truth.scratch, truth.findings)
        for who in ("owner_createdb", "owner"):
            result = run(owners, who, sql)
            if found := contradictions(truth, result):
                problems[f"{who}: {row.form}"] = found
            if who == "owner_createdb" and not truth.statements[1].error:
                assert result.complete, f"{row.form}: {result.summary} {result.scratch} {result.findings}"
            if who == "owner" and not result.complete:
                unknown += 1
                assert "not re-observed" in result.to_evidence()["statements"][1]["not_observed"]  # type: ignore[index]
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
    assert unknown >= 1, "no row was hidden by the primer: the test proves nothing"


ISSUE_MIGRATION = """ALTER TABLE t ADD COLUMN status text;
ALTER TABLE t ALTER COLUMN n TYPE bigint;
CREATE INDEX CONCURRENTLY t_status_idx ON t (status);
"""


def test_owner_without_createdb_reports_not_observed_and_could_not_test(owners: Owners) -> None:
    """The issue's case: no mismatch, no FAILED, the runbook evidence cites no partial lock."""
    result = run(owners, "owner", ISSUE_MIGRATION)
    assert result.passed and not result.complete
    assert result.summary.startswith("COULD NOT TEST"), result.summary
    assert "permission denied to create database" in result.summary
    assert not [f for f in result.findings if f.kind in ("lock_mismatch", "statement_error")], result.findings
    alter = result.statements[1]
    [comparison] = [c for c in alter.lock_comparison if c.relation == "public.t"]
    assert comparison.observed is None and comparison.agrees is None
    assert comparison.not_observed == "AccessExclusiveLock already held since statement 1; not re-observed"
    assert alter.strongest is None
    evidence = result.to_evidence()["statements"]
    assert evidence[1]["observed_lock"] is None and "not re-observed" in evidence[1]["not_observed"]  # type: ignore[index]
    assert evidence[2]["observed_lock"] is None and "could not test" in evidence[2]["not_observed"]  # type: ignore[index]
    assert not any(lk.relation.isdigit() for s in result.statements for lk in s.locks), "bare OIDs"
    # the plan keeps the prediction for that step, and says why
    from agent19.migrate.planning.plan import PlanOptions, plan_migration

    plan = plan_migration(sql=ISSUE_MIGRATION, options=PlanOptions(dry_run=result))
    assert plan.operations[1].lock_level == "AccessExclusiveLock", plan.operations[1]
    assert any(f.operation == 2 and "not re-observed" in f.message for f in plan.findings), plan.findings
    # a rewrite's transient copies are named for what they are
    assert any(lk.relation.startswith("transient relation") for lk in alter.locks)
    from agent19.tools.dryrun import render_dry_run

    text = render_dry_run(result)
    assert "MISMATCH" not in text and "FAILED" not in text, text
    assert "lock public.t: not observed (AccessExclusiveLock already held since statement 1; not re-observed)" in text
    assert "could not test: no scratch database (permission denied to create database)" in text


def test_owner_with_createdb_gets_a_template_copy_despite_its_own_pool(owners: Owners) -> None:
    """agent19's own idle pooled sessions on the target are closed before CREATE DATABASE … TEMPLATE."""
    truth = run(owners, "superuser", ISSUE_MIGRATION)
    result = run(owners, "owner_createdb", ISSUE_MIGRATION)
    assert result.scratch is not None and result.scratch.strategy == "template", result.scratch
    assert result.passed and result.complete, result.summary
    assert not contradictions(truth, result)
    assert result.statements[2].lock_comparison[0].observed == "ShareUpdateExclusiveLock"
    # locks seen from another session while CREATE INDEX CONCURRENTLY ran: the new index by its name
    cic = {lk.relation for lk in result.statements[2].locks}
    assert not any(r.isdigit() or r.startswith("transient") for r in cic), cic


def test_schema_copy_leaves_out_an_extension_the_role_cannot_create_and_says_so(owners: Owners) -> None:
    result = run(owners, "owner_createdb", ISSUE_MIGRATION, scratch_copy="schema")
    assert result.scratch is not None and result.scratch.strategy == "schema_copy"
    assert any("extension pg_stat_statements not copied" in n for n in result.scratch.notes), result.scratch.notes
    assert result.passed and result.complete, result.summary
    assert result.statements[2].lock_comparison[0].observed == "ShareUpdateExclusiveLock"


def test_no_faithful_copy_means_could_not_test_never_failed(owners: Owners) -> None:
    """A materialized view over the extension cannot be copied by the owner: the scratch copy is partial,
    and VACUUM of that view (scratch only) says 'could not test: …', not FAILED."""
    dsn = owners.dsns["owner_createdb"]
    role = psycopg.conninfo.conninfo_to_dict(dsn)["user"]
    with psycopg.connect(make_conninfo(dsn, user="postgres"), autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW stmts AS SELECT queryid FROM pg_stat_statements")
        conn.execute(f"ALTER MATERIALIZED VIEW stmts OWNER TO {role}")
    try:
        result = run(owners, "owner_createdb", "VACUUM t;\nVACUUM stmts;\n", scratch_copy="schema")
        assert result.scratch is not None
        assert any("pg_stat_statements not copied" in n for n in result.scratch.notes), result.scratch.notes
        assert result.passed and not result.complete, (result.summary, result.findings, result.scratch)
        assert result.summary.startswith("COULD NOT TEST"), result.summary
        assert not [f for f in result.findings if f.severity == "error"], result.findings
        vacuum_t, vacuum_view = result.statements
        assert vacuum_t.error is None and vacuum_t.untested is None
        assert vacuum_view.untested and "no faithful scratch copy" in vacuum_view.untested
        assert "does not exist" in vacuum_view.untested
        truth = run(owners, "superuser", "VACUUM t;\n", scratch_copy="schema")
        assert truth.passed and truth.complete
    finally:
        with psycopg.connect(make_conninfo(dsn, user="postgres"), autocommit=True) as conn:
            conn.execute("DROP MATERIALIZED VIEW stmts")


def test_rollback_check_on_an_unfaithful_copy_could_not_test(owners: Owners) -> None:
    from agent19.migrate.dryrun.rollback_check import verify_rollback

    dsn = owners.dsns["owner_createdb"]
    role = psycopg.conninfo.conninfo_to_dict(dsn)["user"]
    with psycopg.connect(make_conninfo(dsn, user="postgres"), autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW stmts2 AS SELECT queryid FROM pg_stat_statements")
        conn.execute(f"ALTER MATERIALIZED VIEW stmts2 OWNER TO {role}")
    db = owners.database("owner_createdb")
    try:
        result = verify_rollback(db, parse_sql("CREATE INDEX CONCURRENTLY stmts2_q ON stmts2 (queryid);"),
                                 parse_sql("DROP INDEX stmts2_q;"))
        assert not result.verified and result.untested, result
        assert result.summary.startswith("could not test the rollback: no faithful scratch copy"), result.summary
        assert "pg_stat_statements" in result.summary
    finally:
        db.close()
        with psycopg.connect(make_conninfo(dsn, user="postgres"), autocommit=True) as conn:
            conn.execute("DROP MATERIALIZED VIEW stmts2")


async def test_over_mcp_the_servers_own_pool_does_not_block_the_template_copy(owners: Owners) -> None:
    """The issue's CREATE INDEX CONCURRENTLY case through a running MCP server whose pool already holds
    sessions on the target: a TEMPLATE copy, the migration PASSED, not 'N other session(s) connected'."""
    from tests.mcp_client import stdio_session

    async with stdio_session("--dsn", owners.dsns["owner_createdb"], "--mode", "dry-run") as session:
        described = await session.call_tool("describe_database", {})
        assert not described.is_error, described.content
        result = await session.call_tool("test_migration", {"sql": ISSUE_MIGRATION, "detail": "full"})
    assert not result.is_error, result.content
    r = result.structured_content
    assert r is not None and r["scratch"]["strategy"] == "template", r["scratch"]
    assert r["passed"] and r["complete"], r["summary"]
