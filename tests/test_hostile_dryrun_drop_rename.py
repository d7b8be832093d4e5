"""A dry run of DROP TABLE / ALTER TABLE … RENAME / SET SCHEMA reports the lock the server took, on the table's name.

Found by a hostile review: every role (superuser included) got "lock public.dupk: observed -, predicted
AccessExclusiveLock [MISMATCH]" and the warning "the server took no lock — the prediction … disagrees with
the server" for `DROP TABLE dupk` and `ALTER TABLE dupk RENAME TO dupk2`: the lock was filed under
"public.dupk (dropped)" or the new name, so the prediction was compared with nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import run_sql

ROOT = Path(__file__).parent.parent
CASES = ["DROP TABLE dupk;", "ALTER TABLE dupk RENAME TO dupk2;", "CREATE SCHEMA s2; ALTER TABLE dupk SET SCHEMA s2;",
         "DROP TABLE dupk; CREATE TABLE dupk (id int);"]


@pytest.mark.parametrize("as_owner", [False, True], ids=["superuser", "owner-without-createdb"])
def test_the_lock_on_a_dropped_or_renamed_table_is_observed(dsn: str, as_owner: bool) -> None:
    owner = f"dupk_owner_{uuid.uuid4().hex[:8]}"
    run_sql(dsn, f"CREATE ROLE {owner} LOGIN NOCREATEDB")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'GRANT CREATE ON DATABASE "{conn.info.dbname}" TO {owner}')
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    run_sql(make_conninfo(dsn, user=owner), "CREATE TABLE dupk (id int); INSERT INTO dupk VALUES (1)")
    target = make_conninfo(dsn, user=owner) if as_owner else dsn
    for sql in CASES:
        done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", target, "--mode", "dry-run", "dry-run",
                               "--sql", sql, "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert not [f for f in result["findings"] if f["kind"] == "lock_mismatch"], (sql, result["findings"])
        compared = [c for s in result["statements"] for c in s["lock_comparison"] if c["relation"] == "public.dupk"]
        assert compared, (sql, result["statements"])
        assert all(c["observed"] == "AccessExclusiveLock" and c["agrees"] for c in compared), (sql, compared)


HIDDEN_SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.victim (id int PRIMARY KEY, v text); INSERT INTO app.victim VALUES (1, 'a');
CREATE INDEX victim_v_idx ON app.victim (v);
CREATE TABLE app.victim2 (id int); INSERT INTO app.victim2 VALUES (1);
CREATE VIEW app.report_v AS SELECT id FROM app.victim2;
CREATE TABLE app.t4 (id int);
CREATE FUNCTION app.drop_victim() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP VIEW app.report_v; END $$;
CREATE FUNCTION app.t4_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN DROP TABLE app.victim; ALTER TABLE app.victim2 RENAME TO victim3; RETURN NEW; END $$;
CREATE TRIGGER t4_drops AFTER INSERT ON app.t4 FOR EACH ROW EXECUTE FUNCTION app.t4_trg();
"""


def test_a_dry_run_names_what_a_function_or_trigger_dropped(dsn: str) -> None:
    """F6: a migration that drops a view through a function and a table through a trigger passed with lock
    mismatches only; now each statement names what it dropped or renamed, and the hidden drop is a warning."""
    owner = f"hid_owner_{uuid.uuid4().hex[:8]}"
    run_sql(dsn, f"CREATE ROLE {owner} LOGIN NOCREATEDB")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'GRANT CREATE ON DATABASE "{conn.info.dbname}" TO {owner}')
    target = make_conninfo(dsn, user=owner)
    run_sql(target, HIDDEN_SETUP)
    sql = "SELECT app.drop_victim(); INSERT INTO app.t4 VALUES (5); DROP TABLE app.t4;"
    done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", target, "--mode", "dry-run", "dry-run",
                           "--sql", sql, "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    result = json.loads(done.stdout)
    statements = result["statements"]
    assert statements[0]["dropped"] == ["view app.report_v"], statements[0]
    # the table, not its primary key's or its own index (they went with it)
    assert statements[1]["dropped"] == ["table app.victim"], statements[1]
    assert statements[1]["renamed"] == ["app.victim2 -> app.victim3"], statements[1]
    assert statements[2]["dropped"] == ["table app.t4"], statements[2]
    warned = sorted(f["message"] for f in result["findings"] if f["kind"] == "dropped_out_of_sight")
    assert warned == [
        "statement 1 dropped view app.report_v through a function, trigger or DO block: its own text does not say so",
        "statement 2 dropped table app.victim through a function, trigger or DO block: its own text does not say so",
        "statement 2 renamed app.victim2 -> app.victim3 through a function, trigger or DO block: its own text does "
        "not say so",
    ], result["findings"]  # the DROP TABLE says what it drops: no warning
    text = subprocess.run([sys.executable, "-m", "agent19", "--dsn", target, "--mode", "dry-run", "dry-run",
                           "--sql", sql], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    assert "dropped table app.victim; renamed app.victim2 -> app.victim3" in text, text
    assert "warning: sql:1 statement 1 dropped view app.report_v through a function" in text, text
    with psycopg.connect(dsn) as conn:  # rolled back
        assert conn.execute("SELECT to_regclass('app.victim') IS NOT NULL AND to_regclass('app.report_v') IS NOT NULL"
                            " AND to_regclass('app.victim2') IS NOT NULL").fetchone()[0]
