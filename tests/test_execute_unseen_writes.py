"""Execute mode measures every write it keeps, wherever the rows are: a table in a schema named ``agent19`` (any role
may make or rename one), a foreign table (another server: not measurable, so confirmed by a human), large objects,
and the write EXPLAIN ANALYZE runs. Through run_sql, in process, as the database's non-superuser owner."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.config import Settings
from agent19.tools.confirm import ConfirmArgs, confirm_destructive
from agent19.tools.registry import ToolContext
from agent19.tools.sql import SqlArgs, run_sql
from tests.conftest import need, owner_login


@pytest.fixture
def owner(dsn, tmp_path):
    app = owner_login(dsn)
    contexts: list[ToolContext] = []

    def run(sql: str, elicit=None):
        ctx = ToolContext(Settings.load(dsn=app, mode="execute", data_dir=str(tmp_path), env={}), elicit=elicit)
        contexts.append(ctx)
        return run_sql(ctx, SqlArgs(sql=sql))

    yield app, run
    for ctx in contexts:
        ctx.db.close()


def _one(dsn: str, sql: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(sql).fetchone()[0]


def _human(message: str, model):
    """A human who reads the report and types the phrase it shows."""
    return model(phrase=message.split("type exactly:\n", 1)[1].split("\n", 1)[0])


# -- r27-k03 -------------------------------------------------------------------------------------------------------

def test_rows_in_a_schema_named_agent19_are_measured_like_any_other(owner):
    """A role may make (or rename its schema to) ``agent19`` before agent19 makes its ledger there; the rows of its
    tables are measured like any other, and so are the ledger's own."""
    app, run = owner
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA victim; CREATE TABLE victim.orders AS SELECT g AS id, 10 AS total "
                  "FROM generate_series(1, 50) g")
    assert run("ALTER SCHEMA victim RENAME TO agent19").executed
    for sql in ("DELETE FROM agent19.orders WHERE id > 0", "UPDATE agent19.orders SET total = 0 WHERE id > 0"):
        out = run(sql)
        assert not out.executed and out.confirmation is not None, (sql, out)
        assert "agent19.orders" in str(out.confirmation.report.findings), out.confirmation
    assert _one(app, "SELECT count(*) FILTER (WHERE total = 10) FROM agent19.orders") == 50
    # and its definitions: a trigger that drops a table there out of sight
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE agent19.keep (id int); CREATE TABLE inbox (id int); "
                  "CREATE FUNCTION drop_keep() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN DROP TABLE agent19.keep; RETURN NEW; END $$; "
                  "CREATE TRIGGER inbox_drops AFTER INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION drop_keep()")
    out = run("INSERT INTO inbox VALUES (1)")
    assert not out.executed and "dropped table agent19.keep" in str(out.confirmation.report.findings), out
    assert _one(app, "SELECT to_regclass('agent19.keep') IS NOT NULL")
    # once agent19 made its ledger (a confirmed statement does), rows there are measured too
    out = run("DROP TABLE agent19.orders", elicit=_human)
    assert out.executed, out
    assert _one(app, "SELECT count(*) FROM agent19.confirmations") == 1
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("INSERT INTO agent19.confirmations (nonce, expires_at) SELECT 'n' || g, now() + interval '1 hour' "
                  "FROM generate_series(1, 9) g")
    out = run("DELETE FROM agent19.confirmations WHERE expires_at > now() - interval '1 year'")
    assert not out.executed and out.confirmation is not None, out
    assert _one(app, "SELECT count(*) FROM agent19.confirmations") == 10


# -- r27-k16 -------------------------------------------------------------------------------------------------------

@pytest.fixture
def remote(dsn, owner):
    """Foreign tables of the owner on ``remote1`` (postgres_fdw, back to this server): 100 rows there, each table
    reached another way."""
    app, run = owner
    role = conninfo_to_dict(app)["user"]
    params = conninfo_to_dict(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        has = c.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgres_fdw'").fetchone()[0]
        need(bool(has), "the postgres_fdw extension is not installed on the test server")
        c.execute("CREATE SCHEMA far; CREATE TABLE far.data (id int PRIMARY KEY, v text);"
                  "INSERT INTO far.data SELECT g, 'row ' || g FROM generate_series(1, 100) g;"
                  "CREATE EXTENSION postgres_fdw;"
                  f"CREATE SERVER remote1 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '{params['host']}', "
                  f"port '{params['port']}', dbname '{params['dbname']}');"
                  f"CREATE USER MAPPING FOR {role} SERVER remote1 OPTIONS (user '{params['user']}', "
                  "password_required 'false');"
                  f"GRANT USAGE ON FOREIGN SERVER remote1 TO {role}")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FOREIGN TABLE remote_data (id int, v text) SERVER remote1 "
                  "OPTIONS (schema_name 'far', table_name 'data');"
                  "CREATE VIEW remote_v AS SELECT * FROM remote_data;"
                  "CREATE TABLE inbox (id int); CREATE FUNCTION wipe_remote() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN DELETE FROM remote_data WHERE id > 0; RETURN NEW; END $$;"
                  "CREATE TRIGGER inbox_wipes AFTER INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION wipe_remote();"
                  "CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id);"
                  "CREATE TABLE parted_local PARTITION OF parted FOR VALUES FROM (1000) TO (2000);"
                  "CREATE FOREIGN TABLE parted_far PARTITION OF parted FOR VALUES FROM (1) TO (1000) SERVER remote1 "
                  "OPTIONS (schema_name 'far', table_name 'data');"
                  "INSERT INTO parted_local VALUES (1500, 'local')")
    return app, run


@pytest.mark.parametrize("sql", [
    "DELETE FROM remote_data WHERE id > 0",
    "UPDATE remote_data SET v = NULL WHERE id > 0",
    "DELETE FROM remote_v WHERE id > 0",  # through a view
    "INSERT INTO inbox VALUES (1)",  # through a trigger
    "DELETE FROM parted WHERE id > 0",  # through a partition
    "DELETE FROM remote_data WHERE id = 7",  # one row there is still not measured here
])
def test_a_write_reaching_a_foreign_table_needs_a_human(remote, dsn, sql):
    app, run = remote
    out = run(sql)
    assert not out.executed and out.confirmation is not None and out.confirmation.outcome == "challenge", out
    reasons = " ".join(f.reason for f in out.confirmation.report.findings)
    assert "foreign table" in reasons and "another server" in reasons, reasons
    # nothing was kept, here or there (postgres_fdw's remote transaction followed the savepoint's rollback)
    assert _one(dsn, "SELECT count(*) FILTER (WHERE v IS NOT NULL) FROM far.data") == 100
    assert _one(app, "SELECT count(*) FROM inbox") + _one(app, "SELECT count(*) - 1 FROM parted_local") == 0


def test_a_confirmed_write_to_a_foreign_table_runs_and_reads_do_not_need_one(remote, dsn, tmp_path):
    app, run = remote
    out = run("DELETE FROM remote_data WHERE id = 7", elicit=_human)
    assert out.executed and out.result.row_count == 1, out
    assert _one(dsn, "SELECT count(*) FROM far.data") == 99
    # confirm_destructive's own step 1 does not run it in a trial (it reaches another server): not measured, so a
    # human confirms it, and step 2 runs it
    ctx = ToolContext(Settings.load(dsn=app, mode="execute", data_dir=str(tmp_path), env={}), elicit=_human)
    try:
        done = confirm_destructive(ctx, ConfirmArgs(sql="INSERT INTO inbox VALUES (1)"))
    finally:
        ctx.db.close()
    assert done.outcome == "executed", done
    assert "reaches another server" in done.report.findings[0].reason, done.report.findings
    assert _one(dsn, "SELECT count(*) FROM far.data") == 0
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO far.data SELECT g, 'row ' || g FROM generate_series(1, 5) g")
    out = run("CREATE TABLE kept AS SELECT id FROM remote_data WHERE id < 3")  # reads it: nothing written there
    assert out.executed and out.result.row_count == 2, out


# -- r27-k08 -------------------------------------------------------------------------------------------------------

LO_COUNT = "SELECT count(*) FROM pg_largeobject_metadata"


def test_large_objects_are_measured_like_rows(owner):
    """An IMMUTABLE function (CREATE FUNCTION is on the allowlist; the parse-level check flags volatile calls only)
    unlinks every large object from CREATE TABLE AS: measured on pg_largeobject_metadata, rolled back, challenged.
    One of them unlinked is not a mass delete; with a human's confirmation the mass delete runs."""
    app, run = owner
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("SELECT lo_from_bytea(0, ('contract scan #' || g)::bytea) FROM generate_series(1, 3) g")
    assert run("CREATE FUNCTION tidy(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$DECLARE r record; BEGIN "
               "FOR r IN SELECT oid FROM pg_largeobject_metadata ORDER BY oid LIMIT n LOOP PERFORM lo_unlink(r.oid); "
               "END LOOP; "
               "RETURN n; END$$").executed
    out = run("CREATE TABLE tidy_log AS SELECT tidy(99) AS n")
    assert not out.executed and out.confirmation is not None, out
    reasons = " ".join(f.reason for f in out.confirmation.report.findings)
    assert ("deleted 3 of the 3 rows of pg_catalog.pg_largeobject_metadata (one row per large object)"
            in reasons), reasons
    assert _one(app, LO_COUNT) == 3 and _one(app, "SELECT to_regclass('tidy_log') IS NULL")
    # their data emptied without unlinking them: pages of pg_largeobject, which this login may not count
    assert run("CREATE FUNCTION blank(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$DECLARE r record; BEGIN "
               "FOR r IN SELECT oid FROM pg_largeobject_metadata LOOP PERFORM lo_truncate(lo_open(r.oid, 131072), 0); "
               "END LOOP; RETURN n; END$$").executed
    out = run("CREATE TABLE blank_log AS SELECT blank(1) AS n")
    assert not out.executed and out.confirmation is not None, out
    reasons = " ".join(f.reason for f in out.confirmation.report.findings)
    assert "updated 3 rows of pg_catalog.pg_largeobject (the data of large objects, in pages)" in reasons, reasons
    assert _one(app, "SELECT string_agg(convert_from(lo_get(oid), 'UTF8'), ',' ORDER BY oid) FROM "
                     "pg_largeobject_metadata") == "contract scan #1,contract scan #2,contract scan #3"
    out = run("CREATE TABLE tidy_one AS SELECT tidy(1) AS n")
    assert out.executed, out
    assert _one(app, LO_COUNT) == 2
    out = run("CREATE TABLE tidy_log AS SELECT tidy(99) AS n", elicit=_human)
    assert out.executed, out
    assert _one(app, LO_COUNT) == 0


# -- r27-k18 -------------------------------------------------------------------------------------------------------

def test_explain_analyze_of_a_write_is_always_rolled_back(owner):
    """EXPLAIN ANALYZE runs the write it explains: in execute mode run_sql rolls it back as explain_query does, and
    says so (a model measuring a cleanup before asking has not done it)."""
    app, run = owner
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE cust (id int PRIMARY KEY); INSERT INTO cust SELECT generate_series(1, 100)")
    for sql in ("EXPLAIN ANALYZE DELETE FROM cust WHERE id < 5", "EXPLAIN (ANALYZE, BUFFERS) UPDATE cust SET id = -id",
                "EXPLAIN ANALYZE DELETE FROM cust"):
        out = run(sql)
        assert out.executed and out.result.transaction.startswith("rolled back"), (sql, out)
        assert "Execution Time" in str(out.result.rows) and "nothing was kept" in out.message, out
    assert _one(app, "SELECT count(*) FILTER (WHERE id > 0) FROM cust") == 100
    out = run("EXPLAIN ANALYZE SELECT count(*) FROM cust")  # a read: as before
    assert out.executed and "Execution Time" in str(out.result.rows), out


def test_a_ledger_table_made_by_someone_else_is_not_used(owner):
    """Any role may make schema ``agent19`` and a ``confirmations`` table there before agent19 does (CREATE SCHEMA
    and CREATE TABLE are on the allowlist): one whose default, check or trigger runs code would run it unmeasured
    each time agent19 records a confirmation. agent19 uses only a table of its own shape, and says so."""
    from agent19.errors import Agent19Error

    app, run = owner
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE orders AS SELECT generate_series(1, 20) AS id; CREATE TABLE spare (id int);"
                  "CREATE FUNCTION purge() RETURNS int LANGUAGE sql AS $$ DELETE FROM orders; SELECT 1 $$")
    assert run("CREATE SCHEMA agent19").executed
    assert run("CREATE TABLE agent19.confirmations (nonce text PRIMARY KEY, expires_at timestamptz NOT NULL, "
               "approved_by text, approved_at timestamptz, used_at timestamptz, outcome text, "
               "n int DEFAULT purge())").executed
    with pytest.raises(Agent19Error, match="agent19.confirmations is not the table agent19 makes"):
        run("DROP TABLE spare", elicit=_human)
    assert _one(app, "SELECT count(*) FROM orders") == 20 and _one(app, "SELECT to_regclass('spare') IS NOT NULL")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("DROP TABLE agent19.confirmations")
    assert run("DROP TABLE spare", elicit=_human).executed  # agent19 makes its own again
    assert _one(app, "SELECT count(*) FROM orders") == 20
