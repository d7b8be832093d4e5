"""Migration files in Prisma's layout (and the plain ones), applied the way Prisma applies them:
each migration.sql as one multi-statement query, i.e. one implicit transaction."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from agent19.migrate import patterns
from agent19.migrate.backfill.executor import BackfillSpec
from agent19.migrate.backfill.scripts import procedure_parts, procedure_sql
from agent19.migrate.layouts.prisma_migrations import LOCK_TOML, pattern_migrations, write_migrations


def _orders(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id bigint PRIMARY KEY, note text, code text);"
                  "INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'n' END, 'c' || g "
                  "FROM generate_series(1, 3000) g")


def _apply_like_prisma(dsn: str, files: list[Path]) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        for f in files:
            c.execute(f.read_text())  # no parameters: one simple query, one implicit transaction


def test_prisma_layout_and_apply(dsn: str, tmp_path: Path) -> None:
    _orders(dsn)
    units = (pattern_migrations(patterns.set_not_null("orders", "note", default="'-'", pg_version=15))
             + pattern_migrations(patterns.add_unique("orders", ["code"], pg_version=15)))
    files = write_migrations(units, tmp_path, "prisma", start=datetime(2025, 1, 2, 3, 4, 5))
    root = tmp_path / "prisma" / "migrations"
    assert (root / "migration_lock.toml").read_text() == LOCK_TOML
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert folders[0].name == "20250102030405_set_not_null_1_set_the_default"
    assert all((f / "migration.sql").exists() and len(list(f.iterdir())) == 1 for f in folders)
    assert [f.name[:14] for f in folders] == sorted(f.name[:14] for f in folders)  # timestamps increase
    for f in folders:
        text = (f / "migration.sql").read_text()
        if "CONCURRENTLY" in text or text.lstrip().startswith("-- CALL") or "\nCALL " in "\n" + text:
            code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
            statements = [s for s in code.split(";") if s.strip()]
            assert len(statements) == 1, f"{f.name} must hold its statement alone"
    _apply_like_prisma(dsn, sorted(p for p in files if p.name == "migration.sql"))
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass "
                         "AND attname = 'note'").fetchone()[0]
        assert c.execute("SELECT count(*) FROM orders WHERE note = '-'").fetchone()[0] == 1500
        assert c.execute("SELECT contype FROM pg_constraint WHERE conname = 'orders_code_key'").fetchone()[0] == "u"
    # a second write adds folders, keeps the lock file
    write_migrations(units[:1], tmp_path, "prisma")
    assert (root / "migration_lock.toml").read_text() == LOCK_TOML


def test_plain_golang_and_flyway_layouts(tmp_path: Path) -> None:
    units = pattern_migrations(patterns.add_check("orders", "amount_positive", "amount > 0", pg_version=15))
    names = {layout: sorted(p.name for p in write_migrations(units, tmp_path / layout, layout))
             for layout in ("plain", "golang", "flyway")}
    assert names["plain"] == ["001_add_check_1_add_not_valid.down.sql", "001_add_check_1_add_not_valid.sql",
                              "002_add_check_2_validate.down.sql", "002_add_check_2_validate.sql"]
    assert names["golang"][0] == "000001_add_check_1_add_not_valid.down.sql"
    assert "000002_add_check_2_validate.up.sql" in names["golang"]
    assert names["flyway"] == ["U1__add_check_1_add_not_valid.sql", "U2__add_check_2_validate.sql",
                               "V1__add_check_1_add_not_valid.sql", "V2__add_check_2_validate.sql"]


def test_procedure_backfill_commits_per_batch_and_shares_the_checkpoint(dsn: str) -> None:
    _orders(dsn)
    spec = BackfillSpec(table="orders", set="note = 'p' || id", where="note IS NULL", batch_size=400)
    with psycopg.connect(dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InvalidTransactionTermination):
            c.execute(procedure_sql(spec, "id", "bigint"))  # one multi-statement query is one transaction
        create, call = procedure_parts(spec, "id", "bigint")
        c.execute(create)
        c.execute(call)
        row = c.execute("SELECT rows_updated, rows_scanned, batches, finished_at IS NOT NULL "
                        "FROM agent19_backfill_checkpoint WHERE name = %s", (spec.checkpoint_name(),)).fetchone()
        assert row == (1500, 3000, 8, True)
        assert c.execute("SELECT count(*) FROM orders WHERE note IS NULL").fetchone()[0] == 0
