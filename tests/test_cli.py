"""The command line as a user runs it: a real process, a real server."""

import json
import os
import subprocess
import sys

import psycopg


def agent19(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": "", **(env or {})},
    )


def test_describe_prints_the_snapshot_as_json(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name varchar(40) NOT NULL DEFAULT 'x')")
    out = agent19("describe", "--dsn", dsn, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    items = data["tables"][0]
    assert items["name"] == "items"
    assert [c["type"] for c in items["columns"]] == ["integer", "character varying(40)"]


def test_describe_text_output_is_readable(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY); CREATE INDEX ON items ((id * 2))")
    out = agent19("describe", "items", "--dsn", dsn)
    assert out.returncode == 0, out.stderr
    assert "public.items" in out.stdout and "constraint items_pkey: PRIMARY KEY (id)" in out.stdout


def test_dsn_from_environment(dsn):
    out = agent19("info", "--format", "json", env={"DATABASE_URL": dsn})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["connected"] is True


def test_bad_dsn_is_one_clear_line_without_password():
    out = agent19("describe", "--dsn", "postgresql://me:TopSecret42@127.0.0.1:1/db")
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("agent19: error: connection refused: ")  # what happened, first
    assert "TopSecret42" not in out.stderr + out.stdout
    # what to do, for a person at a terminal: a one-shot command has no "next call" (an MCP server's wording)
    assert lines[0].endswith("check that the server is running and listens on that host and port; then run the "
                             "command again"), lines[0]


def test_a_connection_error_tells_an_mcp_client_its_next_call_tries_again():
    """The same failure outside the CLI (an MCP server's tool call): the server connects again on the next call."""
    from agent19.db.connection import Database
    from agent19.errors import DatabaseUnavailable
    from tests.conftest import session_settings

    db = Database(session_settings(dsn="postgresql://me:TopSecret42@127.0.0.1:1/db"))
    try:
        db.connect()
        raise AssertionError("connected to port 1")
    except DatabaseUnavailable as exc:
        assert str(exc).endswith("; the next call will try again") and "run the command" not in str(exc), exc
    finally:
        db.close()


def test_invalid_setting_names_it():
    out = agent19("info", "--lock-timeout", "forever")
    assert out.returncode == 2
    assert "lock_timeout" in out.stderr and "forever" in out.stderr


def test_help_teaches():
    out = agent19("--help")
    assert out.returncode == 0
    for word in ("serve", "describe", "info", "--dsn", "--mode", "examples:", "exit status"):
        assert word in out.stdout
    assert "130 interrupted (Ctrl-C)" in " ".join(out.stdout.split())  # every exit status the CLI uses
    sub = agent19("describe", "--help")
    assert "--format" in sub.stdout and "agent19 describe orders --format json" in sub.stdout


def test_a_command_not_named_after_its_module_builds_only_that_module():
    """`agent19 rules` is declared by tools/lint.py: it imports that module only (every tool module would load
    pydantic and the engines of 30 tools to print the rules). The index of commands (agent19/tools/_index.py) says
    which modules declare each command."""
    from agent19.cli_parser import tools_for
    from agent19.tools._index import COMMANDS
    from agent19.tools.registry import tools_of

    for command, (_summary, modules) in COMMANDS.items():
        assert all(command in {s.command.partition(" ")[0] for s in tools_of(m)} for m in modules), (command, modules)
    assert COMMANDS["rules"][1] == ("lint",)
    assert [s.name for s in tools_for("rules")] == ["lint_migration", "list_lint_rules"]


def test_describe_of_a_schema_or_table_that_does_not_exist_is_an_error_naming_the_command(dsn):
    """A misspelt schema is not an empty one (exit 2, as a misspelt table); the CLI's hint names the command a
    person types, the MCP tool's the tool a model calls (agent19.tool_names)."""
    from agent19.config import Settings
    from agent19.errors import InputError
    from agent19.tools.describe import DescribeArgs
    from agent19.tools.registry import ToolContext, all_tools

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA empty_one")
    for args, what in ((["--schema", "nosuch"], "schema 'nosuch' not found"), (["nosuch"], "table 'nosuch' not found")):
        out = agent19("describe", *args, "--dsn", dsn)
        assert out.returncode == 2 and what in out.stderr, out.stderr
        assert "`agent19 describe` without a" in out.stderr and "describe_database" not in out.stderr, out.stderr
    out = agent19("describe", "--schema", "empty_one", "--dsn", dsn)
    assert out.returncode == 0 and "(no tables or views)" in out.stdout, out.stderr
    spec = next(s for s in all_tools() if s.name == "describe_database")
    ctx = ToolContext(Settings.load(dsn=dsn))
    try:
        spec.run(ctx, DescribeArgs(schema="nosuch"))
        raise AssertionError("no error")
    except InputError as exc:
        assert "run describe_database without a schema" in str(exc), exc
    finally:
        ctx.db.close()


def test_a_read_refused_in_dry_run_or_execute_mode_names_that_mode(dsn):
    """Reads go through the read-only guard in every mode; its refusal names the mode in force."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION harmless_looking() RETURNS bigint LANGUAGE sql STABLE AS "
                     "$$ SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE false $$")
    for mode in ("read-only", "dry-run", "execute"):
        out = agent19("sql", "SELECT harmless_looking()", "--mode", mode, "--dsn", dsn)
        assert out.returncode == 1 and "pg_terminate_backend" in out.stderr, out.stderr
        said = {"read-only": "refused in read-only", "execute": "refused in execute mode",
                # dry-run: a statement run in a rolled-back transaction is a trial, screened for the code it reaches
                "dry-run": "refused: function public.harmless_looking calls pg_terminate_backend()"}[mode]
        assert said in out.stderr and (mode == "read-only" or "read-only:" not in out.stderr), out.stderr


def test_a_failed_dry_run_says_which_statement_failed_and_why(dsn, tmp_path):
    migration = tmp_path / "unknown.sql"
    migration.write_text("CREATE TABLE a (id int);\nALTER TABLE nosuch\n  ADD COLUMN c int;\n")
    out = agent19("dry-run", str(migration), "--dsn", dsn, "--mode", "dry-run")
    assert out.returncode == 1, out.stderr
    findings = [line for line in out.stdout.splitlines() if line.startswith(("error:", "warning:", "info:"))]
    assert f'error: {migration}:2 statement 2 failed: relation "nosuch" does not exist (42P01)' in findings, findings
    for line in findings:  # each finding says what, after its place (if any)
        severity, _, rest = line.partition(": ")
        assert rest.strip() and rest.strip() not in (str(migration), f"{migration}:2") and "  " not in line, line


def test_a_failed_statements_locks_are_not_compared(dsn, tmp_path):
    """A statement that failed took no locks to compare with the prediction: its error is the finding, not a lock
    "[MISMATCH]" (observed -, predicted RowExclusiveLock), nor a prediction mismatch in the summary."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY)")
    migration = tmp_path / "fails.sql"
    migration.write_text("INSERT INTO a VALUES (1), (1);\n")
    out = agent19("dry-run", str(migration), "--dsn", dsn, "--mode", "dry-run")
    assert out.returncode == 1, out.stderr
    assert "MISMATCH" not in out.stdout and "0 prediction mismatch(es)" in out.stdout, out.stdout
    assert "lock public.a: not observed (not compared: the statement failed), predicted RowExclusiveLock" in \
        out.stdout, out.stdout
    assert 'duplicate key value violates unique constraint "a_pkey"' in out.stdout, out.stdout


def test_confirm_names_a_called_function_as_a_function(dsn):
    """Step 1 of `agent19 confirm` for a function call: its maintenance-window item says the function is called
    (what it locks is unknown), not that the statement locks "app.drop_victim" as a table and that confirming locks
    "those tables" in SHARE mode (nothing is locked before a function call)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.victim (id int); CREATE FUNCTION app.drop_victim() RETURNS "
                     "void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP TABLE app.victim'; END $$")
    out = agent19("confirm", "SELECT app.drop_victim()", "--dsn", dsn, "--mode", "execute", "--format", "json")
    report = json.loads(out.stdout)["report"]
    window = next(i["detail"] for i in report["checklist"] if i["item"] == "maintenance window")
    assert window.startswith("the statement calls function app.drop_victim"), window
    assert "locks on app.drop_victim" not in window and "SHARE mode" not in window, window
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('app.victim') IS NOT NULL").fetchone() == (True,)


def test_two_statements_to_sql_are_unusable_input_in_every_mode(dsn):
    """README's exit codes: 2 for unusable input. Two statements where one is taken are that in every mode (read-only
    said 1, "found problems", as if the guard had refused a writer); nothing runs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
    for mode in ("read-only", "dry-run", "execute"):
        out = agent19("sql", "SELECT 1; INSERT INTO t VALUES (1)", "--mode", mode, "--dsn", dsn)
        assert out.returncode == 2, (mode, out.returncode, out.stderr)
        assert "2 statements given; `agent19 sql` runs one statement per call" in out.stderr, (mode, out.stderr)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_a_challenge_at_the_cli_tells_the_person_the_commands_to_run(dsn):
    """Review r24b D8: the CLI's challenge spoke to a model about "this server" and a JSON field."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE doomed (id int PRIMARY KEY); INSERT INTO doomed SELECT generate_series(1, 10)")
    out = agent19("confirm", "DROP TABLE doomed", "--dsn", dsn, "--mode", "execute", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["report"]
    step = report["next_step"]
    assert f"agent19 confirm --token {report['token']} --mode execute" in step, step
    assert "this server" not in step and "confirm_command" not in step and "Show this report" not in step, step
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('doomed') IS NOT NULL").fetchone() == (True,)
