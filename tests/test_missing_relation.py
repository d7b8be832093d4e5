"""Connected, lint and plan say when a statement names a table that will not be there (A19049 missing-relation).

A careless `agent19 lint FILE --dsn …` of ``ALTER TABLE nosuch …`` passed and `agent19 plan` planned "public.nosuch":
the migration then failed at that statement. The table is looked up as the login's session would (its search_path,
or the migration's own SET search_path) and in what the migration made or dropped before; offline nothing changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.planning.plan import plan_migration


def agent19(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "DATABASE_URL": ""})


def _app_login(dsn: str) -> str:
    """A login whose search_path is ``app, public``, with ``app.orders`` and ``public.customers``."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"CREATE SCHEMA app AUTHORIZATION {role}")
        c.execute(f"ALTER ROLE {role} SET search_path = app, public")
        c.execute(f"CREATE TABLE public.customers (id int PRIMARY KEY); GRANT ALL ON public.customers TO {role}")
        c.execute("CREATE TABLE app.orders (id int PRIMARY KEY, customer int)")
        c.execute(f"ALTER TABLE app.orders OWNER TO {role}")
    return make_conninfo(dsn, user=role)


def _missing(sql: str, catalog) -> list[str]:  # type: ignore[no-untyped-def]
    report = lint_sql(sql, catalog=catalog)
    return [f"{s.line}: {f.message}" for s in report.statements for f in s.findings if f.rule == "A19049"]


def test_lint_and_plan_say_the_table_does_not_exist(dsn: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    login = _app_login(dsn)
    migration = tmp_path / "unknown.sql"
    migration.write_text("ALTER TABLE nosuch ADD COLUMN c int;\n")
    said = "table app.nosuch does not exist (search_path: app, public): the migration would fail here"
    out = agent19("lint", str(migration), "--dsn", login, "--format", "json")
    assert out.returncode == 1, out.stderr
    findings = [f for s in json.loads(out.stdout)["statements"] for f in s["findings"] if f["rule"] == "A19049"]
    assert [(f["severity"], f["message"]) for f in findings] == [("error", said)], out.stdout
    out = agent19("plan", str(migration), "--dsn", login, "--format", "json")
    plan = json.loads(out.stdout)
    assert [(f["severity"], f["message"]) for f in plan["findings"] if f["rule"] == "A19049"] == [("error", said)], \
        out.stdout
    # offline nothing is known of the database: nothing said
    out = agent19("lint", str(migration), "--format", "json")
    assert "A19049" not in out.stdout, out.stdout


def test_only_what_will_not_be_there_is_reported(dsn: str) -> None:
    login = _app_login(dsn)
    with psycopg.connect(login, row_factory=dict_row) as c:
        catalog = snapshot(c)
    # what exists, on the login's path or qualified, and what the migration makes first: nothing to say
    assert _missing(
        "ALTER TABLE orders ADD COLUMN note text;\n"
        "ALTER TABLE app.orders ADD FOREIGN KEY (customer) REFERENCES customers (id);\n"
        "CREATE TABLE items (id int PRIMARY KEY, parent int REFERENCES items, o int REFERENCES orders);\n"
        "CREATE INDEX ON items (o);\n"
        "ALTER TABLE items RENAME TO lines;\n"
        "INSERT INTO lines (id) VALUES (1);\n"
        "ALTER TABLE lines SET SCHEMA public;\n"
        "TRUNCATE public.lines;\n"
        "CREATE TEMP TABLE scratch (id int);\n"
        "UPDATE scratch SET id = 2;\n"
        "ALTER TABLE IF EXISTS nosuch ADD COLUMN c int;\n"
        "DROP TABLE IF EXISTS nosuch;\n"
        "DROP TABLE customers;\n"
        "CREATE TABLE customers (id int);\n"
        "DELETE FROM customers;\n", catalog) == []
    # what is not: a typo, the wrong schema, a table dropped or renamed away earlier, a missing referenced table
    assert _missing(
        "ALTER TABLE public.orders ADD COLUMN note text;\n"
        "CREATE INDEX ON nosuch (id);\n"
        "ALTER TABLE orders RENAME TO orders_old;\n"
        "DROP TABLE orders;\n"
        "CREATE TABLE t (id int REFERENCES ghosts);\n"
        "SET search_path = public;\n"
        "UPDATE orders_old SET id = 1;\n", catalog) == [
        "1: table public.orders does not exist: the migration would fail here",
        "2: table app.nosuch does not exist (search_path: app, public): the migration would fail here",
        "4: table app.orders was dropped or renamed away earlier in this migration (search_path: app, public): the "
        "migration would fail here",
        "5: table app.ghosts does not exist (search_path: app, public): the migration would fail here",
        "7: table public.orders_old does not exist (search_path: public): the migration would fail here",
    ]
    # after code lint cannot read (it may create tables): nothing is known, nothing said; a known built-in is not that
    assert _missing("SELECT pg_advisory_lock(1);\nALTER TABLE nosuch ADD COLUMN c int;\n", catalog) == [
        "2: table app.nosuch does not exist (search_path: app, public): the migration would fail here"]
    for code in ("SELECT app.make_tables();", "DO $$ BEGIN CREATE TABLE nosuch (id int); END $$;",
                 "CREATE EXTENSION IF NOT EXISTS pg_trgm;", "CALL make_tables();"):
        assert _missing(f"{code}\nALTER TABLE nosuch ADD COLUMN c int;\n", catalog) == [], code
    # the same migration planned: the same findings (plan runs lint)
    plan = plan_migration(sql="CREATE INDEX ON nosuch (id);\n", catalog=catalog)
    assert [f.message for f in plan.findings if f.rule == "A19049"] == [
        "table app.nosuch does not exist (search_path: app, public): the migration would fail here"]


def test_a_table_an_earlier_file_of_the_run_creates_is_there(dsn: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The files of one lint run are one migration in their tool's order: a table V2 creates (not applied yet) is
    there for V10, whether V10 names it bare (found on the search path) or with its schema - also when the files
    are named one by one in a shell glob's order (V10 before V2). A file linted alone does not know it, and a table
    no file creates is still missing."""
    login = _app_login(dsn)
    (tmp_path / "V2__create.sql").write_text("CREATE TABLE invoices (id int PRIMARY KEY);\n"
                                             "CREATE TABLE public.notes (id int PRIMARY KEY);\n")
    (tmp_path / "V10__alter.sql").write_text("ALTER TABLE invoices ADD COLUMN total int;\n"
                                             "ALTER TABLE public.notes ADD COLUMN body text;\n"
                                             "CREATE INDEX ON app.invoices (total);\n")
    (tmp_path / "V11__typo.sql").write_text("ALTER TABLE invoice ADD COLUMN paid bool;\n")

    def missing(*paths: str) -> list[str]:
        out = agent19("lint", *paths, "--dsn", login, "--format", "json")
        assert out.returncode in (0, 1), out.stderr
        return [f"{s['file'].rsplit('/', 1)[-1]}:{s['line']}: {f['message']}"
                for s in json.loads(out.stdout)["statements"] for f in s["findings"] if f["rule"] == "A19049"]

    typo = "V11__typo.sql:1: table app.invoice does not exist (search_path: app, public): the migration would fail here"
    assert missing(str(tmp_path)) == [typo]
    globbed = sorted(str(p) for p in tmp_path.glob("*.sql"))  # V10__alter, V11__typo, V2__create
    assert missing(*globbed) == [typo]
    alone = missing(str(tmp_path / "V10__alter.sql"))
    assert len(alone) == 3 and all("does not exist" in m for m in alone), alone
