"""The privilege matrix: the main flows as (a) a superuser, (b) the owning application role with
CREATEDB, (c) the owning role without CREATEDB, (d) a pg_read_all_data reader — on PostgreSQL 15 and on
the embedded 16. Each cell gives the superuser's answer, or says precisely what it could not determine
and why (never a different answer). Everything goes through the CLI, as a user runs it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.cli import main
from agent19.migrate.dryrun.model import DryRunResult
from tests.test_least_privilege_dryrun import contradictions
from tools.throwaway import ThrowawayServer

ROLES = ("superuser", "owner_createdb", "owner", "reader")
SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id), amount int,
                     note varchar(20), created_at timestamptz DEFAULT now());
INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 500) g;
INSERT INTO orders SELECT g, 1 + g % 500, g % 1000, 'n', now() FROM generate_series(1, 20000) g;
CREATE INDEX orders_amount_idx ON orders (amount);
CREATE INDEX orders_amount_dup ON orders (amount);
ANALYZE;
"""
# ALTER TYPE after ADD COLUMN: its ACCESS EXCLUSIVE is already held; CIC needs a scratch database.
MIGRATION = """ALTER TABLE orders ADD COLUMN status text;
ALTER TABLE orders ALTER COLUMN amount TYPE bigint;
CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status);
"""
SIMPLE = "ALTER TABLE orders ADD COLUMN status text;\nCREATE INDEX orders_status_idx ON orders (status);\n"
# Nothing hidden, nothing outside a transaction: no scratch database is needed
NO_SCRATCH = "CREATE INDEX orders_note_idx ON orders (note);\nALTER TABLE customers ADD COLUMN vip boolean;\n"
DOWN = "DROP INDEX orders_status_idx;\nALTER TABLE orders DROP COLUMN status;\n"


@dataclass
class Matrix:
    server: ThrowawayServer
    dsns: dict[str, str]

    def run(self, who: str, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
        code = main([*argv, "--dsn", self.dsns[who], "--format", "json"])
        out, err = capsys.readouterr()
        try:
            return code, json.loads(out), err
        except json.JSONDecodeError:
            return code, None, err + out


@pytest.fixture(scope="module")
def matrix(pg_any: ThrowawayServer) -> Iterator[Matrix]:
    sfx = uuid.uuid4().hex[:8]
    owner_c, owner_n, reader = f"mx_c_{sfx}", f"mx_n_{sfx}", f"mx_r_{sfx}"
    with psycopg.connect(pg_any.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner_c} LOGIN CREATEDB")
        conn.execute(f"CREATE ROLE {owner_n} LOGIN")
        conn.execute(f"CREATE ROLE {reader} LOGIN IN ROLE pg_read_all_data")
        conn.execute(f"CREATE DATABASE {owner_c} OWNER {owner_c}")
        conn.execute(f"CREATE DATABASE {owner_n} OWNER {owner_n}")
    dsns = {
        "superuser": pg_any.dsn_for(owner_c),
        "owner_createdb": make_conninfo(pg_any.dsn, user=owner_c, dbname=owner_c),
        "owner": make_conninfo(pg_any.dsn, user=owner_n, dbname=owner_n),
        "reader": make_conninfo(pg_any.dsn, user=reader, dbname=owner_c),
    }
    for who in ("owner_createdb", "owner"):
        with psycopg.connect(dsns[who], autocommit=True) as conn:
            conn.execute(SCHEMA)
    try:
        yield Matrix(pg_any, dsns)
    finally:
        with psycopg.connect(pg_any.dsn, autocommit=True) as conn:
            for name in (owner_c, owner_n):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            for name in (owner_c, owner_n, reader):
                conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_info_describe_lint_plan_index_health_give_the_superusers_answer(
        matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    answers: dict[str, dict[str, Any]] = {}
    for who in ROLES:
        got: dict[str, Any] = {}
        code, info, err = matrix.run(who, "info", capsys=capsys)
        assert code == 0 and info["connected"], (who, err)
        got["privileges"] = {p["name"]: p["available"] for p in info["privileges"]}
        code, described, err = matrix.run(who, "describe", capsys=capsys)
        assert code == 0, (who, err)
        got["tables"] = sorted((t["schema"], t["name"]) for t in described["tables"])
        code, linted, err = matrix.run(who, "lint", "--sql", MIGRATION, capsys=capsys)
        assert code in (0, 1) and linted["summary"]["live"], (who, err)
        got["lint"] = linted["summary"]["by_rule"]
        code, plan, err = matrix.run(who, "plan", "--sql", MIGRATION, capsys=capsys)
        assert code in (0, 1), (who, err)
        got["plan"] = [(o["order"], o["lock_level"], o["rewrite"]) for o in plan["operations"]]
        code, health, err = matrix.run(who, "index-health", capsys=capsys)
        assert code in (0, 1), (who, err)
        got["index_health"] = sorted((f["kind"], f.get("index") or "") for f in health["findings"])
        answers[who] = got
    truth = answers["superuser"]
    assert ("public", "orders") in truth["tables"]
    assert any("orders_amount_dup" in name for _, name in truth["index_health"]), truth["index_health"]
    for who in ROLES[1:]:
        for flow in ("tables", "lint", "plan", "index_health"):
            assert answers[who][flow] == truth[flow], (who, flow, answers[who][flow], truth[flow])
    assert answers["owner"]["privileges"]["CREATEDB (scratch databases)"] is False
    assert answers["owner_createdb"]["privileges"]["CREATEDB (scratch databases)"] is True


def _dry(matrix: Matrix, who: str, sql: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, DryRunResult]:
    code, out, err = matrix.run(who, "dry-run", "--sql", sql, "--mode", "dry-run", capsys=capsys)
    assert out is not None, (who, err)
    return code, DryRunResult.model_validate(out)


def test_dry_run_with_and_without_a_scratch_database(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    code, truth = _dry(matrix, "superuser", MIGRATION, capsys)
    assert code == 0 and truth.passed and truth.complete, truth.summary
    for who in ROLES[1:]:
        code, result = _dry(matrix, who, MIGRATION, capsys)
        assert not contradictions(truth, result), (who, contradictions(truth, result), result.findings)
        assert result.passed, (who, result.summary)  # never FAILED: this migration does not fail
        if who == "owner_createdb":
            assert result.complete and code == 0, result.summary
        else:
            assert not result.complete and code == 1, (who, result.summary)
            assert result.summary.startswith("COULD NOT TEST"), result.summary
        if who == "owner":
            assert "permission denied to create database" in result.summary
        if who == "reader":
            assert all(s.untested for s in result.statements), result.statements
            assert all("lacks a privilege (must be owner of table orders)" in (s.untested or "")
                       for s in result.statements[:2]), result.statements
    # no scratch database needed: every role that may run it gets the superuser's answer exactly
    code, simple = _dry(matrix, "superuser", NO_SCRATCH, capsys)
    assert code == 0 and simple.complete and simple.scratch is None, simple.summary
    for who in ("owner_createdb", "owner"):
        code, result = _dry(matrix, who, NO_SCRATCH, capsys)
        assert code == 0 and result.complete and not contradictions(simple, result), (who, result.summary)


def test_rollback_check(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("rollback-check", "--up-sql", SIMPLE, "--down-sql", DOWN, "--mode", "dry-run")
    code, truth, err = matrix.run("superuser", *args, capsys=capsys)
    assert code == 0 and truth["verified"], (truth, err)
    for who in ("owner_createdb", "owner"):
        code, result, err = matrix.run(who, *args, capsys=capsys)
        assert code == 0 and result["verified"], (who, result, err)
    code, result, err = matrix.run("reader", *args, capsys=capsys)
    said = json.dumps(result) if result is not None else err
    assert code != 0 and ("permission denied" in said or "must be owner" in said), (code, said)


def test_explain_read_and_dry_run_write(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    read = ("explain", "SELECT * FROM orders WHERE amount = $1", "--parameters", "42")
    write = ("explain", "UPDATE orders SET note = 'x' WHERE id = $1", "--parameters", "7", "--mode", "dry-run")
    code, truth, err = matrix.run("superuser", *read, "--allow-privileged-reads", capsys=capsys)
    if truth is None and "privileged" in err:
        pytest.fail(f"the superuser's reads need the opt-in: {err}")
    assert code in (0, 1), err
    for who in ROLES[1:]:
        code, result, err = matrix.run(who, *read, capsys=capsys)
        assert result is not None, (who, err)
        assert result["plan"]["root"]["node_type"] == truth["plan"]["root"]["node_type"], who
    code, truth, err = matrix.run("superuser", *write, "--allow-privileged-reads", capsys=capsys)
    assert truth is not None, err
    for who in ("owner_createdb", "owner"):
        code, result, err = matrix.run(who, *write, capsys=capsys)
        assert result is not None and result["execution"] == truth["execution"], (who, err, result)
    code, result, err = matrix.run("reader", *write, capsys=capsys)
    assert result is None and "permission denied for table orders" in err, (code, result, err)


def test_runbook_never_cites_a_partial_observation(matrix: Matrix, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The owner without CREATEDB: the ALTER TYPE step's lock was not re-observed, so the runbook and
    the DevOps handoff cite the prediction (AccessExclusiveLock), never the partial ShareLock."""
    _, result = _dry(matrix, "owner", MIGRATION, capsys)
    dry = tmp_path / "dry.json"
    dry.write_text(result.model_dump_json())
    (tmp_path / "m.sql").write_text(MIGRATION)
    code, _, err = matrix.run("owner", "runbook", str(tmp_path / "m.sql"), "--dry-run-result", str(dry),
                              "--write", str(tmp_path / "out"), capsys=capsys)
    assert code in (0, 1), err
    texts = {p.name: p.read_text() for p in (tmp_path / "out").rglob("*.md")}
    assert texts, list((tmp_path / "out").rglob("*"))
    for name, text in texts.items():
        assert "ShareLock (observed)" not in text, name
    runbook = next(t for n, t in texts.items() if "runbook" in n)
    assert "not re-observed" in runbook
    assert "| Lock | AccessExclusiveLock (predicted)" in runbook  # step 2, ALTER COLUMN TYPE
    assert "| Lock | ShareUpdateExclusiveLock (predicted)" in runbook  # step 3, not tested


def test_pg_version_and_owner(matrix: Matrix) -> None:
    """The matrix ran on this server version (15 system, 16 embedded) as these logins."""
    for who, dsn in matrix.dsns.items():
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                               ).fetchone()
        assert row is not None and row[1] == (who == "superuser"), who
        assert row[0] == conninfo_to_dict(dsn).get("user", "postgres")


def test_confirm_and_backfill(matrix: Matrix, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The confirmation protocol's impact (rows a DELETE would touch) and a backfill's dry plan: the owners
    get the superuser's figures; the reader is refused with the server's reason, nothing changes."""
    delete = ("confirm", "DELETE FROM orders WHERE customer_id > 0", "--mode", "execute",
              "--data-dir", str(tmp_path))
    answers = {}
    for who in ROLES:
        code, out, err = matrix.run(who, *delete, capsys=capsys)
        answers[who] = (code, out, err)
    code, truth, err = answers["superuser"]
    assert truth is not None, err
    text = json.dumps(truth)
    assert truth["outcome"] == "challenge" and "20000" in text.replace(",", ""), text  # every one of 20 000 rows
    def figures(impact: dict[str, Any]) -> dict[str, Any]:  # owner: its own database
        # size_bytes legitimately changes: autovacuum adds the free-space and visibility-map forks to the
        # table whenever it gets to it (sooner or later under load, per database); it is checked on its own
        return {**{k: v for k, v in impact.items() if k != "database"},
                "targets": [{k: v for k, v in t.items() if k != "size_bytes"} for t in impact["targets"]]}

    for who in ("owner_createdb", "owner"):
        code, got, err = answers[who]
        assert got is not None and got["outcome"] == "challenge", (who, got, err)
        mine = figures(got["report"]["impact"])
        assert mine == figures(truth["report"]["impact"]), (who, mine)
        with psycopg.connect(make_conninfo(matrix.dsns["superuser"], dbname=conninfo_to_dict(matrix.dsns[who])[
                "dbname"])) as conn:
            forks, total = conn.execute(  # type: ignore[misc]
                "SELECT pg_relation_size('orders', 'fsm') + pg_relation_size('orders', 'vm'), "
                "pg_total_relation_size('orders')").fetchone()
        # the table's size then: now, less at most the forks autovacuum may have added since
        assert total - forks <= got["report"]["impact"]["targets"][0]["size_bytes"] <= total, (who, forks, total)
    code, got, err = answers["reader"]
    said = (json.dumps(got) if got is not None else "") + err
    assert "permission denied" in said, (code, said)
    for who in ROLES:
        with psycopg.connect(matrix.dsns["superuser"]) as conn:
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
        assert row == (20000,), who  # the challenge step changes nothing
    backfill = ("backfill", "orders", "--set", "note = 'b'", "--where", "amount = 5 AND note <> 'b'",
                "--mode", "execute", "--data-dir", str(tmp_path))
    for who in ("owner_createdb", "owner"):
        code, got, err = matrix.run(who, *backfill, capsys=capsys)
        assert code == 0 and got is not None and got["rows_updated"] == 20, (who, err, got)
    code, got, err = matrix.run("reader", *backfill, capsys=capsys)
    said = (json.dumps(got) if got is not None else "") + err
    assert code != 0 and "permission denied" in said, (code, said)
