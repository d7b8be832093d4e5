"""Execute mode measures every write it keeps, wherever the rows are: a table in a schema named ``agent19`` (any role
may make or rename one), a foreign table (another server: not measurable, so confirmed by a human), large objects,
and the write EXPLAIN ANALYZE runs. Through run_sql, in process, as the database's non-superuser owner."""

from __future__ import annotations

import psycopg
import pytest

from agent19.config import Settings
from agent19.tools.registry import ToolContext
from agent19.tools.sql import SqlArgs, run_sql
from tests.conftest import owner_login


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
