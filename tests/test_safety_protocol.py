"""Bad input, execute and dry-run behaviour of run_sql, impact figures, tokens and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from agent19.config import Settings
from agent19.errors import Agent19Error, ConfigError
from agent19.safety import challenge
from agent19.safety.protocol import Protocol
from agent19.tools.confirm import ConfirmArgs, confirm_destructive
from agent19.tools.registry import ToolContext
from agent19.tools.sql import SqlArgs, run_sql

SETUP = """
CREATE TABLE parents (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE kids (id int PRIMARY KEY, parent_id int REFERENCES parents ON DELETE CASCADE);
INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 10) g;
INSERT INTO kids SELECT g, g FROM generate_series(1, 4) g;
CREATE VIEW parent_names AS SELECT name FROM parents;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER parents_touch BEFORE UPDATE ON parents FOR EACH ROW EXECUTE FUNCTION touch();
CREATE PUBLICATION parents_pub FOR TABLE parents;
"""


@pytest.fixture
def db(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
    contexts = []

    def make(mode="execute"):
        ctx = ToolContext(Settings.load(dsn=dsn, mode=mode, data_dir=str(tmp_path), env={}))
        contexts.append(ctx)
        return ctx

    yield make, dsn
    for ctx in contexts:
        ctx.db.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP PUBLICATION IF EXISTS parents_pub")


def _state(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM parents), (SELECT count(*) FROM kids),"
                            " (SELECT count(*) FROM pg_class WHERE relname LIKE '%archive%' AND relkind = 'r')"
                            ).fetchone()


BAD = {
    "unparseable": ("DROP TABLEE parents", "syntax error"),
    "empty": ("", "no SQL statement given"),
    "only_comments": ("-- nothing\n/* here */", "no SQL statement given"),
    "huge": ("SELECT 1;" + " " * 10_000_000 + "DROP TABLE parents", "at most 1,000,000"),
    "missing_table": ("DROP TABLE no_such_table", "does not exist"),
    "missing_column": ("ALTER TABLE parents DROP COLUMN nope", "does not exist"),
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("tool", ["confirm", "sql"])
def test_bad_input_is_a_clear_error_and_changes_nothing(db, name, tool):
    make, dsn = db
    before = _state(dsn)
    sql, message = BAD[name]
    with pytest.raises(Agent19Error, match=message):
        if tool == "confirm":
            confirm_destructive(make(), ConfirmArgs(sql=sql))
        else:
            run_sql(make(), SqlArgs(sql=sql))
    assert _state(dsn) == before


def test_impact_names_dependents_and_cascaded_rows(db):
    make, dsn = db
    report = confirm_destructive(make("read-only"), ConfirmArgs(sql="DELETE FROM parents WHERE 1 = 1")).report
    target = report.impact.targets[0]
    assert (target.name, target.rows, target.rows_exact, target.cascade_rows) == ("public.parents", 10, True, 4)
    kinds = {(d.kind, d.name) for d in target.dependents}
    assert {("foreign key", "kids.kids_parent_id_fkey"), ("view", "parent_names"), ("trigger", "parents_touch"),
            ("publication", "parents_pub")} <= kinds
    assert report.impact.backup.known is False
    assert [a.title for a in report.alternatives] == ["delete only some rows", "TRUNCATE", "DROP TABLE"]
    assert report.phrase == ("Confirmed: parents has 10 rows (and 4 rows in referencing tables), data is "
                             "archived/not needed, proceed with delete.")
    assert report.impact.database.system_identifier


def test_execute_mode_runs_writes_and_routes_destructive_ones(db):
    make, dsn = db
    ctx = make("execute")
    done = run_sql(ctx, SqlArgs(sql="UPDATE parents SET name = 'x' WHERE id = 1 RETURNING id, name"))
    assert done.executed and done.result.rows == [[1, "x"]] and done.result.transaction == "committed"
    refused = run_sql(ctx, SqlArgs(sql="UPDATE parents SET name = 'y' WHERE id IS NOT NULL"))
    assert refused.executed is False and refused.confirmation.report.findings[0].kind == "update_all"
    with pytest.raises(Agent19Error, match="transaction control"):
        run_sql(ctx, SqlArgs(sql="BEGIN"))
    vacuum = run_sql(ctx, SqlArgs(sql="VACUUM parents"))
    assert vacuum.executed and "outside a transaction" in vacuum.result.transaction
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM parents WHERE name = 'x'").fetchone()[0] == 1


def test_dry_run_rolls_writes_back_and_refuses_destructive(db):
    make, dsn = db
    ctx = make("dry-run")
    out = run_sql(ctx, SqlArgs(sql="DELETE FROM parents WHERE id = 1"))
    assert out.executed and out.result.row_count == 1 and "rolled back" in out.result.transaction
    refused = run_sql(ctx, SqlArgs(sql="TRUNCATE parents CASCADE"))
    assert refused.executed is False and "mode execute" in refused.message
    assert _state(dsn)[:2] == (10, 4)


def test_tokens_are_bound_to_the_key_and_expire(db, tmp_path):
    make, dsn = db
    ctx = make("execute")
    key = challenge.load_key(ctx.settings)
    claims = {"sql": "s", "db": {"name": "d"}, "archive": None}
    token, _ = challenge.issue(key, claims)
    assert challenge.verify(key, token, claims)["sql"] == "s"
    with pytest.raises(challenge.TokenInvalid, match="not issued by this server"):
        challenge.verify(b"another-key-another-key", token, claims)
    expired, _ = challenge.issue(key, claims, ttl_s=-1)
    with pytest.raises(challenge.TokenInvalid, match="expired"):
        challenge.verify(key, expired, claims)
    with pytest.raises(challenge.TokenInvalid, match="another database"):
        challenge.verify(key, token, {**claims, "db": {"name": "other"}})
    assert challenge.load_key(ctx.settings) == key  # generated once, then reused
    configured = Settings.load(dsn=dsn, mode="execute", data_dir=str(tmp_path), env={"AGENT19_CONFIRM_KEY": "k" * 32})
    assert challenge.load_key(configured) == b"k" * 32
    with pytest.raises(ConfigError, match="too short"):
        challenge.load_key(Settings.load(data_dir=str(tmp_path), env={"AGENT19_CONFIRM_KEY": "short"}))
    # a token from one key does not open a server with another
    proto = Protocol(configured, ctx.db)
    step1 = Protocol(ctx.settings, ctx.db).challenge("TRUNCATE kids")
    out = proto.confirm("TRUNCATE kids", step1.report.token, step1.report.phrase)
    assert out.outcome == "refused" and "not issued by this server" in out.reasons[0]
    assert _state(dsn)[1] == 4


def test_truncate_with_archive_verifies_then_truncates(db):
    make, dsn = db
    ctx = make("execute")
    step1 = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE kids", archive=True)).report
    no_archive = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE kids", token=step1.token, phrase=step1.phrase))
    assert no_archive.outcome == "refused" and "archive choice" in no_archive.reasons[0]
    step1 = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE kids", archive=True)).report
    # the human confirms out of band (what `agent19 confirm --token` and the page do), then the retry runs
    approved = Protocol(ctx.settings, ctx.db).approve(step1.token, step1.phrase, "terminal")
    assert approved.outcome == "approved", approved.reasons
    done = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE kids", archive=True, token=step1.token))
    assert done.executed and done.archived[0].verified and done.archived[0].archive_rows == 4
    assert done.channel == "terminal"
    assert _state(dsn) == (10, 0, 1)


def test_cli_two_step_flow(db, tmp_path):
    _, dsn = db
    base = [sys.executable, "-m", "agent19", "confirm", "DROP TABLE kids", "--dsn", dsn, "--data-dir", str(tmp_path),
            "--mode", "execute"]
    root = Path(__file__).parent.parent
    first = subprocess.run([*base, "--format", "json"], capture_output=True, text=True, cwd=root)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)["report"]
    # by default a phrase passed as an argument is refused, even the exact one, and the token survives
    default = subprocess.run([*base, "--token", report["token"], "--phrase", report["phrase"]], capture_output=True,
                             text=True, cwd=root)
    assert default.returncode == 1 and "not accepted" in default.stdout, default.stdout
    assert _state(dsn)[1] == 4
    base.append("--allow-model-confirmation")  # the operator's opt-in, for an approver that is a program
    wrong = subprocess.run([*base, "--token", report["token"], "--phrase", "yes"], capture_output=True, text=True,
                           cwd=root)
    assert wrong.returncode == 1 and "does not match exactly" in wrong.stdout
    report = json.loads(subprocess.run([*base, "--format", "json"], capture_output=True, text=True,
                                       cwd=root).stdout)["report"]
    done = subprocess.run([*base, "--token", report["token"], "--phrase", report["phrase"]], capture_output=True,
                          text=True, cwd=root)
    assert done.returncode == 0 and "outcome: executed" in done.stdout, done.stdout + done.stderr
    sql = subprocess.run([sys.executable, "-m", "agent19", "sql", "SELECT count(*) AS n FROM parents", "--dsn", dsn],
                         capture_output=True, text=True, cwd=root)
    assert sql.returncode == 0 and "n (bigint)" in sql.stdout and "\n10\n" in sql.stdout


def test_step_one_measures_a_disguised_write_in_dry_run_and_says_so_in_read_only(db):
    make, dsn = db
    sql = "DELETE FROM parents WHERE id > 0"
    measured = confirm_destructive(make("dry-run"), ConfirmArgs(sql=sql))
    assert measured.outcome == "challenge" and measured.report.measured
    kinds = {t.name: (t.rows, t.rows_touched) for t in measured.report.impact.targets}
    assert kinds == {"public.parents": (10, 10), "public.kids": (4, 4)}  # the cascade is measured too
    unmeasured = confirm_destructive(make("read-only"), ConfirmArgs(sql=sql))
    assert unmeasured.outcome == "not_destructive" and "measures the rows it touches" in unmeasured.report.next_step
    assert _state(dsn)[:2] == (10, 4)
