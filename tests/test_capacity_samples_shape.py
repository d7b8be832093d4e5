"""agent19 reads and writes ``agent19.capacity_samples`` only when it is the table agent19 makes (review r29 F1, F2).

Any role that may create schema ``agent19`` in the database (its owner, here not a superuser) can make a relation by
that name before agent19 does: a view calling the owner's function, or a table with a trigger. ``capacity`` read it
and ``capacity sample --store table`` wrote it as agent19's login — a superuser here — running the owner's code.
Now the table is locked, its shape checked (ledger.Q_SHAPE: columns and types, no trigger, rule, policy, default but
its own), and otherwise not read (a note says why) nor written (a clear error). The owner's function advances a
sequence when it runs, so "never ran" is observed."""

from __future__ import annotations

import json

import psycopg

from tests.conftest import owner_login
from tests.test_captured_path import _ran
from tests.test_cli import agent19

EVIL = """
CREATE SEQUENCE public.ran; GRANT USAGE, SELECT ON SEQUENCE public.ran TO PUBLIC;
CREATE FUNCTION public.evil() RETURNS text LANGUAGE sql AS $$ SELECT pg_catalog.nextval('public.ran')::text $$;
CREATE SCHEMA agent19;
"""
SHAPE = """(at timestamptz PRIMARY KEY, database text NOT NULL, database_bytes bigint NOT NULL,
            cluster_bytes bigint NOT NULL, rows bigint NOT NULL, tables jsonb NOT NULL DEFAULT '{}')"""


def _owner(dsn: str, sql: str) -> str:
    """``sql`` run by the database's owner (not a superuser), after :data:`EVIL`; its DSN."""
    owner = owner_login(dsn, "capshape")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(EVIL + sql)
    return owner


def test_a_view_in_its_place_is_not_read(dsn, tmp_path):
    _owner(dsn, "CREATE VIEW agent19.capacity_samples AS SELECT pg_catalog.now() AS at, "
                "public.evil() AS database, 1::bigint AS database_bytes, 1::bigint AS cluster_bytes, "
                "1::bigint AS rows, '{}'::jsonb AS tables")
    out = agent19("capacity", "--window", "0", "--dsn", dsn, "--format", "json",
                  env={"AGENT19_DATA_DIR": str(tmp_path)})
    assert out.returncode in (0, 1), out.stderr
    assert _ran(dsn) == 0
    assert "agent19.capacity_samples not read: agent19.capacity_samples is not the table agent19 makes" in out.stdout


def test_a_table_with_a_trigger_is_not_written(dsn, tmp_path):
    _owner(dsn, f"CREATE TABLE agent19.capacity_samples {SHAPE}; "
                "CREATE FUNCTION public.evil_trg() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM public.evil(); RETURN NEW; END $$; "
                "CREATE TRIGGER t BEFORE INSERT ON agent19.capacity_samples "
                "FOR EACH ROW EXECUTE FUNCTION public.evil_trg()")
    out = agent19("capacity", "sample", "--store", "table", "--mode", "execute", "--dsn", dsn,
                  env={"AGENT19_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1 and "is not the table agent19 makes" in out.stderr, out.stdout + out.stderr
    assert _ran(dsn) == 0
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM agent19.capacity_samples").fetchone()[0] == 0


def test_the_table_agent19_makes_is_written_and_read(dsn, tmp_path):
    """Made by agent19 (its default included), written twice and read back by the plan."""
    env = {"AGENT19_DATA_DIR": str(tmp_path)}
    for _ in range(2):
        out = agent19("capacity", "sample", "--store", "table", "--mode", "execute", "--dsn", dsn, "--format", "json",
                      env=env)
        assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["samples_for_database"] == 2
    plan = agent19("capacity", "--window", "0", "--dsn", dsn, "--format", "json", env=env)
    assert "not read" not in plan.stdout and "agent19.capacity_samples" in plan.stdout, plan.stdout


def test_a_table_of_its_shape_another_role_owns_is_not_read(dsn, tmp_path):
    """r30 G1, G2: the owner's table has exactly agent19's columns, but a statistics object over an expression
    calling the owner's function (planning a read of the table runs it) — and the owner may add one at any moment,
    after any check: a table another role owns is not read at all. Nor is a sequence by that name an error."""
    owner = _owner(dsn, f"CREATE TABLE agent19.capacity_samples {SHAPE}; " + """
CREATE FUNCTION public.lie() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
    RAISE EXCEPTION 'owner code ran as superuser';
  END IF;
  RETURN 0;
END $$;
CREATE STATISTICS agent19.planned ON (public.lie() + rows), database FROM agent19.capacity_samples""")
    out = agent19("capacity", "--window", "0", "--dsn", dsn, "--format", "json",
                  env={"AGENT19_DATA_DIR": str(tmp_path)})
    assert out.returncode in (0, 1) and "owner code ran" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert "agent19.capacity_samples not read" in out.stdout and "owned by a role other than" in out.stdout
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("DROP TABLE agent19.capacity_samples; CREATE SEQUENCE agent19.capacity_samples")
    out = agent19("capacity", "--window", "0", "--dsn", dsn, "--format", "json",
                  env={"AGENT19_DATA_DIR": str(tmp_path)})
    assert out.returncode in (0, 1) and "agent19.capacity_samples not read" in out.stdout, out.stdout + out.stderr
