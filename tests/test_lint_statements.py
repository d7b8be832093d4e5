"""Statements lint used to miss: inline constraints in ADD COLUMN, whole-namespace drops, schema renames, domain
constraints, PRIMARY KEY USING INDEX on nullable columns, transaction-control mistakes, non-rerunnable
CREATE INDEX CONCURRENTLY.

Each case names the author's example it follows (squawk rule pages https://squawkhq.com/docs/<rule>,
strong_migrations' README https://github.com/ankane/strong_migrations, eugene https://github.com/kaaveland/eugene).
The claims about scans and locks are observed on the test server: the locks the session holds (pg_locks) and
the sequential scans of the transaction (pg_stat_xact_user_tables), before the transaction ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.migrate.lint.engine import lint_paths, lint_sql
from tests.conftest import owner_login, run_sql


def findings(sql: str, **options: Any) -> dict[str, str]:
    """rule → severity of the last statement's findings."""
    options.setdefault("pg_version", 150000)
    return {f.rule: f.severity for f in lint_sql(sql, **options).statements[-1].findings}


def observe(dsn: str, table: str, sql: str) -> tuple[set[str], int]:
    """Run ``sql`` in a transaction that is rolled back: the lock modes held on ``table``, and its seq scans."""
    with psycopg.connect(dsn) as conn:
        conn.execute(sql)
        modes = {r[0] for r in conn.execute(
            "SELECT l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND l.pid = pg_backend_pid()", (table,))}
        row = conn.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = %s", (table,)).fetchone()
        conn.rollback()
    return modes, row[0] if row else 0


@pytest.fixture
def app(dsn: str) -> str:
    """An application role owning a populated table, a domain-typed table and a unique index."""
    login = owner_login(dsn)
    run_sql(login, "CREATE TABLE orders (id bigint PRIMARY KEY, n int);"
                   "INSERT INTO orders SELECT g, g FROM generate_series(1, 50000) g;"
                   "CREATE DOMAIN positive_int AS int; CREATE TABLE scores (v positive_int);"
                   "INSERT INTO scores SELECT g FROM generate_series(1, 50000) g;"
                   "CREATE TABLE accounts (id bigint, name text); INSERT INTO accounts SELECT g, 'a' "
                   "FROM generate_series(1, 50000) g; CREATE UNIQUE INDEX accounts_id_idx ON accounts (id);"
                   "CREATE TABLE checked (id bigint NOT NULL); INSERT INTO checked SELECT generate_series(1, 50000);"
                   "CREATE UNIQUE INDEX checked_id_idx ON checked (id);")
    return login


# -- ADD COLUMN with inline constraints --------------------------------------------------------------------

def test_add_column_with_inline_check_scans_under_access_exclusive(app: str) -> None:
    """strong_migrations' README "Adding a check constraint" (it blocks reads and writes while every row is
    checked) — here inline in ADD COLUMN, which their README's safe form splits into NOT VALID + VALIDATE."""
    sql = "ALTER TABLE orders ADD COLUMN discount int CHECK (discount >= 0)"
    found = findings(sql + ";")
    assert found.get("A19032") == "error"
    fix = next(f.fix for f in lint_sql(sql + ";").statements[0].findings if f.rule == "A19032")
    assert fix and "ADD COLUMN discount integer;" in fix and "CHECK (discount >= 0) NOT VALID" in fix \
        and "VALIDATE CONSTRAINT orders_discount_check" in fix
    modes, scans = observe(app, "orders", sql)
    assert "AccessExclusiveLock" in modes and scans == 1
    # the bare column reads nothing: the finding is about the CHECK, not ADD COLUMN
    assert observe(app, "orders", "ALTER TABLE orders ADD COLUMN discount int") == ({"AccessExclusiveLock"}, 0)
    assert "A19032" not in findings("ALTER TABLE orders ADD COLUMN discount int;")
    # the split form from the fix: no A19032, and the ADD CONSTRAINT … NOT VALID reads nothing either
    assert observe(app, "orders", "ALTER TABLE orders ADD COLUMN discount int;"
                   "ALTER TABLE orders ADD CONSTRAINT d CHECK (discount >= 0) NOT VALID")[1] == 0


def test_add_column_with_inline_unique_or_primary_key_builds_an_index_under_the_lock(app: str) -> None:
    """squawk's disallowed-unique-constraint and eugene's E7 (creating a new unique constraint): build the index
    CONCURRENTLY and attach it with USING INDEX."""
    for sql, word in (("ALTER TABLE orders ADD COLUMN code text UNIQUE", "UNIQUE USING INDEX"),
                      ("ALTER TABLE orders ADD COLUMN uid bigint PRIMARY KEY", "PRIMARY KEY USING INDEX")):
        (stmt,) = lint_sql(sql + ";", pg_version=150000).statements
        (hit,) = [f for f in stmt.findings if f.rule == "A19032"]
        assert hit.severity == "error" and hit.fix and "CREATE UNIQUE INDEX CONCURRENTLY" in hit.fix and word in hit.fix
    modes, scans = observe(app, "orders", "ALTER TABLE orders ADD COLUMN code text UNIQUE")
    assert "AccessExclusiveLock" in modes and scans == 1
    # on a table created earlier in the set nothing waits: not flagged
    assert "A19032" not in findings("CREATE TABLE fresh (id bigint);\nALTER TABLE fresh ADD COLUMN code text UNIQUE;")


# -- statements not flagged before ---------------------------------------------------------------------

def test_drop_database_and_drop_schema() -> None:
    """squawk's ban-drop-database; DROP SCHEMA … CASCADE loses what it holds (PostgreSQL's DROP SCHEMA page)."""
    assert findings("DROP DATABASE shop;") == {"A19033": "error"}
    assert findings("DROP SCHEMA billing CASCADE;").get("A19033") == "error"
    assert findings("DROP SCHEMA IF EXISTS billing;").get("A19033") == "warning"
    assert "A19033" not in findings("CREATE SCHEMA scratch;\nDROP SCHEMA scratch CASCADE;")


def test_rename_schema_breaks_clients() -> None:
    """squawk's renaming-table applies to every relation in a schema at once."""
    assert findings("ALTER SCHEMA billing RENAME TO invoicing;").get("A19034") == "error"
    assert "A19034" not in findings("ALTER SCHEMA billing OWNER TO app;")


def test_alter_domain_add_constraint_scans_under_share_lock(app: str) -> None:
    """squawk's ban-alter-domain-with-add-constraint (its error and ok examples)."""
    sql = "ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0)"
    assert findings(sql + ";").get("A19035") == "error"
    for ok in ("ALTER DOMAIN positive_int SET DEFAULT 1;", "ALTER DOMAIN positive_int DROP CONSTRAINT other;",
               "ALTER DOMAIN positive_int RENAME CONSTRAINT a TO b;", sql + " NOT VALID;"):
        assert "A19035" not in findings(ok), ok
    assert observe(app, "scores", sql) == ({"ShareLock"}, 1)
    assert observe(app, "scores", sql + " NOT VALID") == (set(), 0)
    # and the fix does not pretend that VALIDATE on a domain is lighter: it takes the same lock
    assert observe(app, "scores", sql + " NOT VALID; ALTER DOMAIN positive_int VALIDATE CONSTRAINT positive") == (
        {"ShareLock"}, 1)
    fix = next(f.fix for f in lint_sql(sql + ";").statements[0].findings if f.rule == "A19035")
    assert fix and "same ShareLock" in fix


def test_primary_key_using_index_on_nullable_columns(app: str) -> None:
    """strong_migrations' README "Adding a primary key" / squawk's adding-serial-primary-key-field: the
    recommended USING INDEX form is only instant when the columns are NOT NULL already."""
    attach = "ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX accounts_id_idx"
    with psycopg.connect(app, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    assert findings(attach + ";", catalog=catalog).get("A19036") == "error"
    ok = "ALTER TABLE checked ADD CONSTRAINT checked_pkey PRIMARY KEY USING INDEX checked_id_idx;"
    assert "A19036" not in findings(ok, catalog=catalog)
    assert findings(attach + ";").get("A19036") == "warning"  # without a database: said as an assumption
    in_set = "CREATE UNIQUE INDEX CONCURRENTLY accounts_id_idx ON accounts (id);\n" + attach + ";"
    assert findings(in_set).get("A19036") == "warning"
    assert "A19036" not in findings("ALTER TABLE accounts ALTER COLUMN id SET NOT NULL;\n" + in_set)
    modes, scans = observe(app, "accounts", attach)
    assert "AccessExclusiveLock" in modes and scans == 1
    assert observe(app, "checked", ok.rstrip(";"))[1] == 0


def test_transaction_nesting_and_uncommitted_begin(tmp_path: Path, dsn: str) -> None:
    """squawk's transaction-nesting and ban-uncommitted-transaction examples; the server shows the difference
    between a file sent as one query string (golang-migrate) and statements run one by one in a transaction
    (Flyway)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("CREATE TABLE n (a int); INSERT INTO n VALUES (1); BEGIN; INSERT INTO n VALUES (2); COMMIT")
        assert notices == [] and conn.execute("SELECT count(*) FROM n").fetchone() == (2,)
    with psycopg.connect(dsn) as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SELECT 1")
        conn.execute("BEGIN")
        assert notices == ["there is already a transaction in progress"]
        conn.rollback()
    report = lint_sql("BEGIN;\nCREATE TABLE users (id bigint);\n", pg_version=150000)
    assert {f.rule for f in report.statements[0].findings} == {"A19037"}
    report = lint_sql("BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;\nCOMMIT;\n", pg_version=150000)
    assert [bool([f for f in s.findings if f.rule == "A19037"]) for s in report.statements] == [
        False, True, False, False, False]
    assert not [f for s in lint_sql("BEGIN;\nSELECT 1;\nCOMMIT;\n").statements for f in s.findings]
    # Flyway wraps the file: an explicit BEGIN there nests; golang-migrate sends one query string, where a BEGIN
    # only makes the implicit transaction explicit
    (tmp_path / "V1__x.sql").write_text("BEGIN;\nSELECT 1;\nCOMMIT;\n")
    (tmp_path / "1_x.up.sql").write_text("BEGIN;\nSELECT 1;\nCOMMIT;\n")
    fly = lint_paths([tmp_path / "V1__x.sql"])
    gm = lint_paths([tmp_path / "1_x.up.sql"])
    assert [f.severity for f in fly.statements[0].findings if f.rule == "A19037"] == ["warning"]
    assert not [f for f in gm.statements[0].findings if f.rule == "A19037"]


def test_create_index_concurrently_without_if_not_exists(app: str) -> None:
    """squawk's prefer-robust-stmts: a failed concurrent build leaves an INVALID index and the re-run fails."""
    sql = "CREATE INDEX CONCURRENTLY orders_n_idx ON orders (n);"
    assert findings(sql).get("A19038") == "warning"
    assert "A19038" not in findings("CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_n_idx ON orders (n);")
    fix = next(f.fix for f in lint_sql(sql).statements[0].findings if f.rule == "A19038")
    assert fix and "DROP INDEX CONCURRENTLY IF EXISTS orders_n_idx" in fix and "IF NOT EXISTS orders_n_idx" in fix
    # the server: a failed build leaves the INVALID index, and running the statement again fails on its name
    run_sql(app, "INSERT INTO orders VALUES (50001, 1)")  # n = 1 twice: a UNIQUE build fails
    unique = "CREATE UNIQUE INDEX CONCURRENTLY orders_n_key ON orders (n)"
    with psycopg.connect(app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(unique)
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_n_key'::regclass"
                            ).fetchone() == (False,)
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute(unique)
