"""Lint reads a migration set as one ordered history, as PostgreSQL will run it.

Cases are written here after the authors' own examples (source named beside each): squawk's rule pages and
tests (https://squawkhq.com/docs/rules), strong_migrations' README (https://github.com/ankane/strong_migrations),
eugene's examples (https://github.com/kaaveland/eugene). Where a case claims something about scans or locks, the
server is asked too.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.migrate.lint.engine import LintReport, lint_paths, lint_sql
from tests.conftest import one, owner_login, run_sql


def rules_at(report: LintReport, file_suffix: str) -> set[str]:
    return {f.rule for s in report.statements if (s.file or "").endswith(file_suffix) for f in s.findings}


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


# strong_migrations README, "Setting NOT NULL on an existing column": add a NOT VALID check, validate it in
# another migration, then set NOT NULL (12+: no scan). squawk's adding-not-null-field tests the same across
# migrations ("cross_migration_validate_then_set_not_null").
NOT_NULL_STEPS = (
    "ALTER TABLE users ADD CONSTRAINT users_some_column_null CHECK (some_column IS NOT NULL) NOT VALID;\n",
    "ALTER TABLE users VALIDATE CONSTRAINT users_some_column_null;\n",
    "SET lock_timeout = '5s';\nALTER TABLE users ALTER COLUMN some_column SET NOT NULL;\n"
    "ALTER TABLE users DROP CONSTRAINT users_some_column_null;\n",
)

LAYOUTS = {
    "flyway": ("V1__check.sql", "V2__validate.sql", "V3__not_null.sql"),
    "golang-migrate": ("1_check.up.sql", "2_validate.up.sql", "3_not_null.up.sql"),
    "prisma": ("migrations/20240101000000_check/migration.sql", "migrations/20240102000000_validate/migration.sql",
               "migrations/20240103000000_not_null/migration.sql"),
    "numbered": ("001_check.sql", "002_validate.sql", "003_not_null.sql"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_check_validated_in_an_earlier_file_makes_set_not_null_fine(tmp_path: Path, layout: str) -> None:
    names = LAYOUTS[layout]
    write(tmp_path, dict(zip(names, NOT_NULL_STEPS, strict=True)))
    report = lint_paths([tmp_path], pg_version=150000)
    assert report.summary.files == 3
    assert "A19006" not in rules_at(report, names[2]), report.statements
    # without the validating file in between, the scan is back
    (tmp_path / names[1]).unlink()
    assert "A19006" in rules_at(lint_paths([tmp_path], pg_version=150000), names[2])


def test_before_12_the_validated_check_does_not_help(tmp_path: Path) -> None:
    """squawk's adding-not-null-field: on PostgreSQL 11 SET NOT NULL scans whatever CHECK exists."""
    write(tmp_path, dict(zip(LAYOUTS["flyway"], NOT_NULL_STEPS, strict=True)))
    assert "A19006" in rules_at(lint_paths([tmp_path], pg_version=110000), "V3__not_null.sql")


def test_objects_created_earlier_in_the_set_are_new(tmp_path: Path) -> None:
    """eugene's examples create a table in one step and alter it in the next; strong_migrations' README
    ("Adding a column with a volatile default") notes the problem is only for existing tables."""
    write(tmp_path, {
        "V1__create.sql": "CREATE TABLE books (id bigint PRIMARY KEY, title text);\n",
        "V2__alter.sql": "ALTER TABLE books ADD COLUMN uid uuid DEFAULT gen_random_uuid();\n"
                         "ALTER TABLE books ALTER COLUMN title SET NOT NULL;\n"
                         "ALTER TABLE books ALTER COLUMN id TYPE numeric;\n"
                         "CREATE INDEX books_title_idx ON books (title);\n",
        "V3__view.sql": "CREATE VIEW book_titles AS SELECT id, title FROM books;\n",
        "V4__replace_view.sql": "CREATE OR REPLACE VIEW book_titles AS SELECT id, title, uid FROM books;\n",
        "V5__maintenance.sql": "REINDEX TABLE books;\nREINDEX INDEX books_title_idx;\nDROP INDEX books_title_idx;\n"
                               "ALTER TABLE books ADD COLUMN code text UNIQUE;\nVACUUM FULL books;\n",
    })
    report = lint_paths([tmp_path], pg_version=150000)
    loud = [(s.file, s.sql, f.rule) for s in report.statements for f in s.findings if f.severity != "info"]
    assert loud == [], loud
    # the same statements on a table that is not created in the set are flagged
    alone = lint_paths([tmp_path / "V2__alter.sql"], pg_version=150000)
    assert {"A19004", "A19005", "A19006", "A19001"} <= rules_at(alone, "V2__alter.sql")
    maintenance = lint_paths([tmp_path / "V5__maintenance.sql"], pg_version=150000)
    assert {"A19003", "A19002", "A19032"} <= rules_at(maintenance, "V5__maintenance.sql")
    # a view not created in the set may have readers queued on it: CREATE OR REPLACE needs a lock_timeout
    assert "A19012" in rules_at(lint_paths([tmp_path / "V4__replace_view.sql"], pg_version=150000), "view.sql")


def test_a_new_view_needs_no_lock_timeout() -> None:
    """squawk's require-timeout-settings page: only statements that lock something existing need it."""
    assert not lint_sql("CREATE VIEW active_users AS SELECT * FROM users WHERE active;", pg_version=160000) \
        .statements[0].findings


def test_lock_timeout_does_not_leak_from_one_file_to_the_next(tmp_path: Path) -> None:
    """Each file may run on its own connection: a SET in V1 does not protect V2."""
    write(tmp_path, {"V1__a.sql": "SET lock_timeout = '5s';\nALTER TABLE t ADD COLUMN a text;\n",
                     "V2__b.sql": "ALTER TABLE t ADD COLUMN b text;\n"})
    report = lint_paths([tmp_path], pg_version=160000)
    assert "A19012" not in rules_at(report, "V1__a.sql") and "A19012" in rules_at(report, "V2__b.sql")


def test_history_with_the_live_catalog_matches_the_server(tmp_path: Path, dsn: str) -> None:
    """With a catalog, the set advances it: the CHECK validated in V2 (not yet in the database) proves NOT NULL in
    V3. Then the files are applied as an application role, and the server confirms that V3 read no row."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE users (id bigint PRIMARY KEY, some_column int);"
                 "INSERT INTO users SELECT g, g FROM generate_series(1, 20000) g; ANALYZE users;")
    write(tmp_path, dict(zip(LAYOUTS["flyway"], NOT_NULL_STEPS, strict=True)))
    with psycopg.connect(app, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    report = lint_paths([tmp_path], catalog=catalog)
    assert report.summary.live and "A19006" not in rules_at(report, "V3__not_null.sql")
    assert "A19006" in rules_at(lint_paths([tmp_path / "V3__not_null.sql"], catalog=catalog), "V3__not_null.sql")

    with psycopg.connect(app, autocommit=True) as conn:
        for name in LAYOUTS["flyway"][:2]:
            conn.execute((tmp_path / name).read_text())
    with psycopg.connect(app) as conn:  # V3 in one transaction, its own scans read before it commits
        conn.execute((tmp_path / LAYOUTS["flyway"][2]).read_text())
        scans = conn.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'users'").fetchone()
        control = conn.execute("SELECT count(*) FROM users").fetchone()
        after = conn.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'users'").fetchone()
    assert scans == (0,), "SET NOT NULL scanned users although a validated CHECK proves it"
    assert control == (20000,) and after == (1,)  # the counter does count a scan in this transaction
    assert one(dsn, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                    "AND attname = 'some_column'") is True


# -- enum values ---------------------------------------------------------------------------------------------

def test_enum_add_value_before_or_after_is_not_flagged(dsn: str) -> None:
    """squawk has no rule against ADD VALUE; eugene's examples pass it. It locks no table and rewrites nothing:
    observed below on the server (the table's relfilenode and the locks held by the adding transaction)."""
    for sql in ("ALTER TYPE mood ADD VALUE 'meh' BEFORE 'happy';", "ALTER TYPE mood ADD VALUE 'ecstatic' AFTER "
                "'happy';", "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'sad';"):
        report = lint_sql("SET lock_timeout = '2s';\n" + sql, pg_version=150000)
        assert [f for f in report.statements[1].findings if f.severity != "info"] == [], sql
        assert report.statements[1].lock is None and not report.statements[1].rewrite
    run_sql(dsn, "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE person (m mood);"
                 "INSERT INTO person SELECT 'happy' FROM generate_series(1, 1000)")
    node = "SELECT pg_relation_filenode('person')"
    before = one(dsn, node)
    with psycopg.connect(dsn) as conn:
        conn.execute("ALTER TYPE mood ADD VALUE 'meh' BEFORE 'happy'")
        locks = conn.execute("SELECT l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                             "WHERE c.relname = 'person' AND l.pid = pg_backend_pid()").fetchall()
        conn.commit()
    assert locks == [] and one(dsn, node) == before
    assert one(dsn, "SELECT array_agg(enumlabel ORDER BY enumsortorder)::text FROM pg_enum "
                    "WHERE enumtypid = 'mood'::regtype") == "{sad,meh,happy}"


def test_enum_value_used_in_the_adding_transaction(dsn: str) -> None:
    """strong_migrations' README (enum values) and PostgreSQL's ALTER TYPE page: from 12 the new value cannot be
    used before the adding transaction commits; before 12 ADD VALUE cannot run in a transaction block."""
    sql = "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nUPDATE person SET m = 'meh' WHERE m = 'sad';\nCOMMIT;\n"
    rules15 = {f.rule for f in lint_sql(sql, pg_version=150000).statements[1].findings}
    rules11 = {f.rule for f in lint_sql(sql, pg_version=110000).statements[1].findings}
    assert "A19027" in rules15 and "A19010" not in rules15
    assert "A19010" in rules11
    # separate transactions (each statement alone) are fine
    alone = lint_sql("ALTER TYPE mood ADD VALUE 'meh';\nUPDATE person SET m = 'meh' WHERE m = 'sad';\n",
                     pg_version=150000)
    assert "A19027" not in {f.rule for f in alone.statements[0].findings}
    # and the server agrees with the finding on 15
    run_sql(dsn, "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE person (m mood)")
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.UnsafeNewEnumValueUsage):
        conn.execute("ALTER TYPE mood ADD VALUE 'meh'")
        conn.execute("UPDATE person SET m = 'meh' WHERE m = 'sad'")


def test_a_table_the_live_catalog_already_has_is_not_new(tmp_path: Path, dsn: str) -> None:
    """A set linted against a database where its first files already ran: CREATE TABLE IF NOT EXISTS of a live,
    populated table does not make the later statements on it harmless."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE books (id bigint PRIMARY KEY, title text);"
                 "INSERT INTO books SELECT g, 't' FROM generate_series(1, 1000) g")
    write(tmp_path, {"V1__create.sql": "CREATE TABLE IF NOT EXISTS books (id bigint PRIMARY KEY, title text);\n",
                     "V2__alter.sql": "SET lock_timeout = '5s';\nALTER TABLE books ALTER COLUMN title SET NOT NULL;\n"})
    with psycopg.connect(app, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    assert "A19006" in rules_at(lint_paths([tmp_path], catalog=catalog), "V2__alter.sql")
    assert "A19006" not in rules_at(lint_paths([tmp_path], pg_version=150000), "V2__alter.sql")  # no catalog: new
    with psycopg.connect(app) as conn:  # the server: SET NOT NULL reads the live table
        conn.execute((tmp_path / "V2__alter.sql").read_text())
        assert conn.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'books'").fetchone() == (1,)


def test_an_index_built_in_another_file_serves_the_foreign_key(tmp_path: Path) -> None:
    """PostgreSQL's "Foreign Keys" section advises indexing the referencing columns; strong_migrations' README adds
    foreign keys NOT VALID and validates them in a later migration — the index often comes in its own file."""
    write(tmp_path, {
        "V1__fk.sql": "ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_fk FOREIGN KEY (order_id) "
                      "REFERENCES orders (id) NOT VALID;\n",
        "V2__index.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS order_lines_order_id_idx "
                         "ON order_lines (order_id);\n",
        "V3__validate.sql": "ALTER TABLE order_lines VALIDATE CONSTRAINT order_lines_order_fk;\n",
    })
    assert "A19025" not in rules_at(lint_paths([tmp_path], pg_version=150000), "V1__fk.sql")
    assert "A19025" in rules_at(lint_paths([tmp_path / "V1__fk.sql"], pg_version=150000), "V1__fk.sql")


async def test_the_mcp_tool_lints_a_directory_with_style_and_assumptions(tmp_path: Path) -> None:
    """Through the real MCP client: a Flyway directory as one history, the style group and a stated assumption."""
    from tests.mcp_client import stdio_session

    write(tmp_path, dict(zip(LAYOUTS["flyway"], NOT_NULL_STEPS, strict=True)))
    (tmp_path / "V4__types.sql").write_text("SET lock_timeout = '5s';\n"
                                            "ALTER TABLE public.users ALTER COLUMN name TYPE varchar(100);\n")
    async with stdio_session(env={"DATABASE_URL": ""}) as session:
        plain = await session.call_tool("lint_migration", {"paths": [str(tmp_path)], "pg_version": 15})
        styled = await session.call_tool("lint_migration", {"paths": [str(tmp_path)], "pg_version": 15,
                                                            "style": True, "assume": ["type-changes-widen"]})
    assert not plain.is_error and not styled.is_error, (plain.content, styled.content)
    by_file = {}
    for s in plain.structured_content["statements"]:
        by_file.setdefault(Path(s["file"]).name, set()).update(f["rule"] for f in s["findings"])
    assert "A19006" not in by_file["V3__not_null.sql"] and "A19005" in by_file["V4__types.sql"]
    rules = {f["rule"] for s in styled.structured_content["statements"] for f in s["findings"]}
    assert "A19005" not in rules and "A19042" in rules  # stated widening; varchar(n) is a style finding
    assert any("widening" in a for a in styled.structured_content["summary"]["assumptions"])
