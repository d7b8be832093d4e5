"""The replace and merge load strategies on real servers.

replace_by = "truncate": one transaction empties the destination and loads the whole source; readers see the old
rows or the new ones, never an empty table (they wait on its ACCESS EXCLUSIVE lock, observed in pg_locks); a
failure mid-load leaves the old rows (both ways of replace); it is never the default and an inline pipeline over
MCP may not choose it. The swap (the default way) is tested in test_etl_replace_swap.py.
merge (PostgreSQL 15+): MERGE with inserted / updated / unchanged counted, on every server version here."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from agent19.errors import InputError
from agent19.etl.batch import run_pipeline
from agent19.etl.pipeline import parse_pipeline
from tests.conftest import _fresh_database, one, run_sql
from tests.mcp_client import stdio_session
from tests.test_etl_batch import CHECKSUM, DEST_DDL, SOURCE_DDL, _db, _pipeline

OLD = 3000
TRUNCATE = 'strategy = "replace"\nreplace_by = "truncate"'


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def _seed(source: str, dest: str, rows: int = 5000) -> None:
    run_sql(source, SOURCE_DDL)
    run_sql(source, f"INSERT INTO orders (id, email, amount) SELECT g, 'u' || g || '@x.org', g FROM "
                    f"generate_series(1, {rows}) g")
    run_sql(dest, DEST_DDL)


def _sum(dsn: str, table: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(CHECKSUM.format(table)).fetchone()


def test_replace_by_truncate_swaps_the_rows_in_one_transaction_readers_never_see_it_empty(dsn, warehouse):
    _seed(dsn, warehouse)
    run_sql(warehouse, f"INSERT INTO analytics.orders (id, email) SELECT g + 100000, 'old' FROM "
                       f"generate_series(1, {OLD}) g")  # rows the source does not have: replace drops them
    seen: list[int] = []
    locks: set[str] = set()
    done = threading.Event()

    def read() -> None:  # blocks on the lock while the replace runs
        with psycopg.connect(warehouse, autocommit=True) as reader:
            while not done.is_set():
                seen.append(reader.execute("SELECT count(*) FROM analytics.orders").fetchone()[0])

    def watch() -> None:  # never blocks: pg_locks takes no lock on the table
        with psycopg.connect(warehouse, autocommit=True) as watcher:
            while not done.is_set():
                locks.update(m for (m,) in watcher.execute(
                    "SELECT l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'orders' "
                    "AND l.granted AND l.pid <> pg_backend_pid() AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())").fetchall())

    threads = [threading.Thread(target=read), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    try:
        result = run_pipeline(parse_pipeline(_pipeline(dsn, warehouse, strategy="replace", batch=250, transform=False)
                                             .replace('strategy = "replace"', TRUNCATE)), _db(dsn))
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert result.replaced == OLD and result.inserted == 5000 and result.batches == 20
    assert _sum(dsn, "orders") == _sum(warehouse, "analytics.orders")
    assert 0 not in seen and set(seen) <= {OLD, 5000}, sorted(set(seen))
    assert "AccessExclusiveLock" in locks, locks
    run_sql(dsn, "DELETE FROM orders WHERE id > 4000")  # a second run mirrors the source again, deletes included
    again = run_pipeline(parse_pipeline(_pipeline(dsn, warehouse, strategy="replace", batch=250)), _db(dsn))  # swap
    assert again.replaced == 5000 and again.inserted == 4000 and again.resumed_from is None
    assert _sum(dsn, "orders") == _sum(warehouse, "analytics.orders")


@pytest.mark.parametrize("way", ["swap", "truncate"])
def test_a_replace_that_fails_mid_load_keeps_the_old_rows(dsn, warehouse, way):
    _seed(dsn, warehouse)
    run_sql(warehouse, "INSERT INTO analytics.orders (id, email) VALUES (1, 'old'), (2, 'old')")
    run_sql(warehouse, "ALTER TABLE analytics.orders ADD CHECK (amount < 4500)")  # a late batch fails
    before = _sum(warehouse, "analytics.orders")
    with pytest.raises(psycopg.errors.CheckViolation):
        run_pipeline(parse_pipeline(_pipeline(dsn, warehouse, strategy="replace", batch=500, transform=False).replace(
            'strategy = "replace"', f'strategy = "replace"\nreplace_by = "{way}"')), _db(dsn))
    assert _sum(warehouse, "analytics.orders") == before
    assert one(warehouse, "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_agent19\\_swap\\_%'") == 0


def test_replace_is_never_the_default_and_takes_no_lag(dsn, warehouse):
    text = _pipeline(dsn, warehouse).replace('strategy = "upsert"', "").replace('key = ["id"]', "")
    with pytest.raises(InputError, match="strategy upsert needs destination.key"):
        parse_pipeline(text)
    with pytest.raises(InputError, match="lag window means nothing"):
        parse_pipeline(_pipeline(dsn, warehouse, strategy="replace", lag="5 minutes"))


@pytest.mark.asyncio
async def test_an_inline_replace_is_refused_over_mcp_and_nothing_is_removed(dsn):
    _seed(dsn, dsn)
    run_sql(dsn, "INSERT INTO analytics.orders (id, email) VALUES (1, 'keep')")
    text = _pipeline("env:DATABASE_URL", "env:DATABASE_URL", strategy="replace")
    async with stdio_session("--mode", "execute", env={"DATABASE_URL": dsn}) as session:
        refused = await session.call_tool("etl_run", {"pipeline_toml": text})
        dry = await session.call_tool("etl_run", {"pipeline_toml": text, "dry_run": True})
    said = " ".join(getattr(c, "text", "") for c in refused.content)
    assert refused.is_error and "strategy replace" in said and "pipeline file" in said, said
    assert not dry.is_error and dry.structured_content["extracted"] == 5000  # a dry run removes nothing
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT id, email FROM analytics.orders").fetchall() == [(1, "keep")]


@pytest.fixture
def dest_any(pg_any) -> Iterator[str]:
    yield from _fresh_database(pg_any)


def test_merge_counts_inserted_updated_unchanged(dsn_any, dest_any):
    dest = dest_any
    _seed(dsn_any, dest, rows=3000)
    first = run_pipeline(parse_pipeline(_pipeline(dsn_any, dest, strategy="merge", batch=700, transform=False)),
                         _db(dsn_any))
    assert (first.inserted, first.updated, first.unchanged) == (3000, 0, 0)
    run_sql(dsn_any, "UPDATE orders SET status = 'paid', updated_at = clock_timestamp() WHERE id <= 10")
    run_sql(dsn_any, "UPDATE orders SET updated_at = clock_timestamp() WHERE id BETWEEN 11 AND 15")  # same values
    run_sql(dsn_any, "INSERT INTO orders (id, email, amount) VALUES (5001, 'n@x.org', 1)")
    second = run_pipeline(parse_pipeline(_pipeline(dsn_any, dest, strategy="merge", batch=700, transform=False)),
                          _db(dsn_any))
    assert (second.inserted, second.updated, second.unchanged) == (1, 15, 0)  # updated_at moved for 11-15 too
    assert _sum(dsn_any, "orders") == _sum(dest, "analytics.orders")


def test_replace_and_merge_as_a_non_superuser_owner(dsn, warehouse):
    from tests.conftest import owner_login

    app_src, app_dest = owner_login(dsn, "etlsrc"), owner_login(warehouse, "etldst")
    _seed(app_src, app_dest, rows=1000)
    run_sql(app_dest, "INSERT INTO analytics.orders (id, email) VALUES (99999, 'old')")
    replaced = run_pipeline(parse_pipeline(_pipeline(app_src, app_dest, strategy="replace", transform=False)),
                            _db(app_src))
    assert replaced.replaced == 1 and replaced.inserted == 1000
    run_sql(app_src, "UPDATE orders SET status = 'paid', updated_at = clock_timestamp() WHERE id = 1")
    merged = run_pipeline(parse_pipeline(_pipeline(app_src, app_dest, strategy="merge", name="m", transform=False)),
                          _db(app_src))
    assert merged.inserted == 0 and merged.updated == 1 and merged.unchanged == 999
    assert _sum(app_src, "orders") == _sum(app_dest, "analytics.orders")
