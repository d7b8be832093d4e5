"""Lint: rules on their examples, file conventions, report shapes, the CLI as a process, config and ignores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent19.db.models import SchemaSnapshot
from agent19.migrate.layouts.files import load_path
from agent19.migrate.lint.config import LintConfig
from agent19.migrate.lint.engine import lint_paths, lint_sql
from agent19.migrate.lint.rules import all_rules
from agent19.migrate.parse import SqlParseError

ROOT = Path(__file__).parent.parent


def agent19(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": "", "PYTHONPATH": str(ROOT)}, cwd=cwd or ROOT,
    )


def rules_hit(report) -> set[str]:
    return {f.rule for s in report.statements for f in s.findings}


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: f"{r.code}-{r.name}")
def test_bad_example_triggers_and_good_does_not(rule):
    config = LintConfig(style=True)  # the style group is off by default
    # a rule that needs the database's catalog: its examples against an empty database (login's path: public)
    catalog = SchemaSnapshot(server_version=rule.pg_version, server_version_text="", database="empty",
                             schemas=["public"], search_path=["public"]) if rule.live else None
    assert rule.code in rules_hit(lint_sql(rule.bad, pg_version=rule.pg_version, config=config, catalog=catalog)), \
        rule.bad
    good = lint_sql(rule.good, pg_version=rule.good_pg_version or rule.pg_version, config=config, catalog=catalog)
    if rule.live:  # offline nothing is known of the database: nothing said
        assert rule.code not in rules_hit(lint_sql(rule.bad, pg_version=rule.pg_version, config=config)), rule.bad
    assert rule.code not in rules_hit(good), rule.good


def test_rules_are_documented_and_docs_are_current():
    for r in all_rules():
        assert r.code.startswith("A19") and r.why and r.alternative and r.bad.strip() and r.good.strip()
        assert r.severity in ("error", "warning", "info")
    out = agent19("rules", "--format", "markdown")
    assert out.returncode == 0, out.stderr
    assert (ROOT / "docs" / "rules.md").read_text() == out.stdout, "regenerate: agent19 rules --format markdown"


def test_new_table_in_same_migration_is_not_an_error():
    sql = "CREATE TABLE t (id bigint PRIMARY KEY, a int);\nCREATE INDEX t_a ON t (a);\n" \
          "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\nALTER TABLE t ADD COLUMN b uuid DEFAULT gen_random_uuid();"
    report = lint_sql(sql, pg_version=160000)
    assert not [f for s in report.statements for f in s.findings if f.severity == "error"]
    existing = lint_sql("CREATE INDEX t_a ON t (a);", pg_version=160000)
    assert "A19001" in rules_hit(existing)


def test_json_shape_is_exact():
    out = agent19("lint", "--sql", "ALTER TABLE orders ADD COLUMN n int DEFAULT random();", "--format", "json")
    data = json.loads(out.stdout)
    assert set(data) == {"statements", "summary"}
    (stmt,) = data["statements"]
    assert set(stmt) == {"file", "line", "sql", "kind", "tables", "lock", "rewrite", "in_transaction", "risk",
                         "findings"}
    assert stmt["lock"] == "AccessExclusiveLock" and stmt["rewrite"] is True and stmt["line"] == 1
    assert all(set(f) == {"rule", "severity", "message", "fix"} for f in stmt["findings"])
    assert "A19004" in {f["rule"] for f in stmt["findings"]}
    assert data["summary"]["errors"] >= 1 and data["summary"]["failed"] is True


def test_sarif_structure(tmp_path):
    f = tmp_path / "V1__idx.sql"
    f.write_text("SELECT 1;\nCREATE INDEX i ON t (a);\n")
    out = agent19("lint", str(f), "--format", "sarif")
    assert out.returncode == 1, out.stderr
    sarif = json.loads(out.stdout)
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    run = sarif["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    result = next(r for r in run["results"] if r["ruleId"] == "A19001")
    assert ids[result["ruleIndex"]] == "A19001" and result["level"] == "error"
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("V1__idx.sql") and loc["region"]["startLine"] == 2


def test_sarif_is_structurally_valid_sarif_2_1_0(tmp_path):
    """The properties SARIF 2.1.0 requires (§3.13–3.27), on several files, rules and levels."""
    (tmp_path / "V1__a.sql").write_text("CREATE INDEX i ON t (a);\nDROP INDEX j;\n")
    (tmp_path / "V2__b.sql").write_text("CREATE TABLE x (id serial PRIMARY KEY, j json);\n")
    sarif = json.loads(agent19("lint", str(tmp_path), "--format", "sarif").stdout)
    assert set(sarif) >= {"version", "$schema", "runs"} and sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] and isinstance(driver["rules"], list)
    ids = [r["id"] for r in driver["rules"]]
    assert len(ids) == len(set(ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
    assert {r["level"] for r in run["results"]} == {"error", "warning", "note"}  # info → note
    files = set()
    for result in run["results"]:
        assert result["message"]["text"] and ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in {"none", "note", "warning", "error"}
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["region"]["startLine"] >= 1 and isinstance(physical["region"]["startLine"], int)
        files.add(physical["artifactLocation"]["uri"].rsplit("/", 1)[-1])
    assert files == {"V1__a.sql", "V2__b.sql"}


def test_exit_codes(tmp_path):
    safe = tmp_path / "safe.sql"
    safe.write_text("SET lock_timeout = '5s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n")
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE INDEX i ON t (a);\n")
    broken = tmp_path / "broken.sql"
    broken.write_text("SELECT 1;\n\nALTER TABLE t ADD COLUMN;\n")
    assert agent19("lint", str(safe)).returncode == 0
    assert agent19("lint", str(bad)).returncode == 1
    assert agent19("lint", str(bad), "--fail-on", "never").returncode == 0
    out = agent19("lint", str(broken))
    assert out.returncode == 2 and f"{broken}:3:" in out.stderr and "syntax error" in out.stderr
    assert agent19("lint").returncode == 2
    assert agent19("lint", str(tmp_path / "missing.sql")).returncode == 2


def test_text_output_names_line_lock_and_fix(tmp_path):
    f = tmp_path / "001_init.sql"
    f.write_text("-- comment\nALTER TABLE orders\n  ALTER COLUMN total SET NOT NULL;\n")
    out = agent19("lint", str(f), "--pg-version", "15")
    assert out.returncode == 1
    assert f"{f}:2:" in out.stdout and "AccessExclusiveLock" in out.stdout and "A19006" in out.stdout
    assert "VALIDATE CONSTRAINT" in out.stdout and "PostgreSQL 15" in out.stdout


def test_ignore_comments():
    sql = ("-- agent19:ignore A19001\nCREATE INDEX a ON t (a);\n"
           "CREATE INDEX b ON t (b);  -- agent19:ignore create-index-blocking, non-rerunnable\n"
           "CREATE INDEX c ON t (c);\n")
    report = lint_sql(sql)
    lines = {s.line: {f.rule for f in s.findings} for s in report.statements}
    assert "A19001" not in lines[2] and "A19030" in lines[2]
    assert lines[3] == set()
    assert "A19001" in lines[4]
    assert report.summary.ignored == 3


def test_config_file_disables_rules_and_sets_threshold(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.agent19.lint]\ndisable = ["A19001"]\nfail_on = "warning"\n')
    (tmp_path / "m.sql").write_text("CREATE INDEX i ON t (a);\nDROP INDEX j;\n")
    out = agent19("lint", "m.sql", "--format", "json", cwd=tmp_path)
    data = json.loads(out.stdout)
    assert "A19001" not in data["summary"]["by_rule"] and "A19002" in data["summary"]["by_rule"]
    assert out.returncode == 1  # the warning fails at fail_on = warning
    (tmp_path / "agent19.toml").write_text('[lint]\ndisable = ["no-such-rule"]\n')
    bad = agent19("lint", "m.sql", cwd=tmp_path)
    assert bad.returncode == 2 and "no-such-rule" in bad.stderr


def test_conventions_and_order(tmp_path):
    fly = tmp_path / "flyway"
    fly.mkdir()
    for name in ("V1__init.sql", "V10__ten.sql", "V2__two.sql", "V1_1__patch.sql", "U2__two.sql", "R__views.sql"):
        (fly / name).write_text("SELECT 1;\n")
    migs = load_path(fly)
    assert [m.id for m in migs] == ["1", "1.1", "2", "10", "R"]
    assert migs[2].down_file and migs[2].down_file.endswith("U2__two.sql")
    assert all(m.convention == "flyway" and m.wrapped for m in migs)

    gm = tmp_path / "golang"
    gm.mkdir()
    for v in ("2", "10", "1"):
        (gm / f"{v}_step.up.sql").write_text("SELECT 1;\n")
        (gm / f"{v}_step.down.sql").write_text("SELECT 2;\n")
    migs = load_path(gm)
    assert [m.id for m in migs] == ["1", "2", "10"] and migs[0].down_file.endswith("1_step.down.sql")

    pr = tmp_path / "prisma" / "migrations"
    for d in ("20240102000000_b", "20240101000000_a"):
        (pr / d).mkdir(parents=True)
        (pr / d / "migration.sql").write_text("CREATE INDEX CONCURRENTLY i ON t (a);\n")
    (pr / "migration_lock.toml").write_text('provider = "postgresql"\n')
    migs = load_path(tmp_path / "prisma")
    assert [m.name for m in migs] == ["a", "b"] and migs[0].convention == "prisma"
    # Prisma runs migration.sql as one script: CONCURRENTLY fails there
    assert "A19010" in rules_hit(lint_paths([tmp_path / "prisma"]))

    num = tmp_path / "numbered"
    num.mkdir()
    for name in ("10_c.sql", "2_b.sql", "001_a.sql"):
        (num / name).write_text("SELECT 1;\n")
    assert [m.name for m in load_path(num)] == ["a", "b", "c"]


def test_explicit_transaction_blocks():
    sql = ("CREATE INDEX CONCURRENTLY a ON t (a);\nBEGIN;\nCREATE INDEX CONCURRENTLY b ON t (b);\nCOMMIT;\n"
           "CREATE INDEX CONCURRENTLY c ON t (c);\n")
    report = lint_sql(sql)
    flagged = [s.line for s in report.statements if any(f.rule == "A19010" for f in s.findings)]
    assert flagged == [3]


def test_empty_and_comment_only_input(tmp_path):
    (tmp_path / "empty.sql").write_text("")
    (tmp_path / "comments.sql").write_text("-- nothing\n/* here */\n")
    report = lint_paths([tmp_path])
    assert report.summary.statements == 0 and not report.summary.failed
    # the command says nothing was linted (a CI pointed at the wrong files must not pass): unusable input
    run = agent19("lint", str(tmp_path))
    assert run.returncode == 2 and "no statements found" in run.stderr, run.stderr


def test_non_utf8_is_a_clear_error(tmp_path):
    f = tmp_path / "latin1.sql"
    f.write_bytes("SELECT 1;\nSELECT 'caf\xe9';\n".encode("latin-1"))
    out = agent19("lint", str(f))
    assert out.returncode == 2 and "not UTF-8" in out.stderr and ":2:" in out.stderr


def test_non_utf8_sql_argument_is_a_clear_error():
    """--sql with bytes that are not UTF-8 (a shell passes them through as they are) was a UnicodeEncodeError
    traceback; it is the same clear error as a file's, naming the line and the byte."""
    out = agent19("lint", "--sql", os.fsdecode(b"SELECT 1;\nSELECT 'caf\xe9';"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "the SQL text:2: not UTF-8 (byte 0xe9" in out.stderr


def test_unparseable_sql_names_the_line():
    with pytest.raises(SqlParseError) as exc:
        lint_sql("SELECT 1;\nSELECT 2;\nCREAT TABLE x ();\n")
    assert exc.value.line == 3


def test_ten_megabyte_file(tmp_path):
    f = tmp_path / "big.sql"
    stmt = "INSERT INTO t (a, b) VALUES (1, '" + "x" * 1000 + "');\n"
    f.write_text(stmt * (10 * 1024 * 1024 // len(stmt) + 1))
    report = lint_paths([f], config=LintConfig(fail_on="never"))
    assert report.summary.statements > 10_000 and not report.summary.failed


def test_live_catalog_proves_not_null(dsn):
    """With a database, a validated CHECK (col IS NOT NULL) that exists there makes SET NOT NULL safe."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total int, note int);"
                     "ALTER TABLE orders ADD CONSTRAINT total_nn CHECK (total IS NOT NULL)")
    sql = "ALTER TABLE orders ALTER COLUMN total SET NOT NULL;\nALTER TABLE orders ALTER COLUMN note SET NOT NULL;"
    out = agent19("lint", "--sql", sql, "--dsn", dsn, "--format", "json")
    data = json.loads(out.stdout)
    assert data["summary"]["live"] is True and data["summary"]["pg_version"] >= 150000
    per_line = {s["line"]: {f["rule"] for f in s["findings"]} for s in data["statements"]}
    assert "A19006" not in per_line[1] and "A19006" in per_line[2]


def test_code_lint_cannot_read_is_flagged_with_the_dry_run_as_the_fix():
    """F6: a migration dropping tables through a function call and a DO block linted clean (0 findings)."""
    report = lint_sql("SELECT app.drop_victim();\nDO $$BEGIN EXECUTE 'DROP TABLE app.' || 'victim2'; END$$;\n"
                      "CALL app.purge();\nSELECT setval('s', 1);\nSELECT count(*) FROM t;\n")
    found = [[(f.rule, f.severity) for f in s.findings if f.rule == "A19048"] for s in report.statements]
    assert found == [[("A19048", "info")], [("A19048", "warning")], [("A19048", "warning")], [], []], found
    first = report.statements[0].findings[0]
    assert "app.drop_victim()" in first.message and "dry-run it" in (first.fix or "")  # per face: test_face_wording


def test_a_schema_qualified_function_call_anywhere_is_flagged_and_built_ins_are_not():
    """Review r24b D5: only a bare SELECT f() was flagged; a call in a FROM, INSERT ... SELECT, SET, a CTE or a
    DEFAULT runs the same unread code."""
    report = lint_sql("SELECT * FROM app.drop_victim();\nINSERT INTO app.t SELECT 1 FROM app.drop_victim();\n"
                      "UPDATE app.t SET v = app.drop_victim()::text;\n"
                      "WITH x AS (SELECT app.drop_victim()) SELECT * FROM x;\n"
                      "ALTER TABLE app.t ADD COLUMN w text DEFAULT app.drop_victim();\n"
                      "UPDATE app.t SET v = lower(v);\nSELECT count(*) FROM app.t;\n", pg_version=150000)
    flagged = [any(f.rule == "A19048" and "app.drop_victim()" in f.message for f in s.findings)
               for s in report.statements]
    assert flagged == [True, True, True, True, True, False, False], flagged
