"""The COPY path of etl run (no transform): each batch is one COPY whose last row's cursor values are read back
from COPY text; text cursor values with tabs, backslashes, line breaks and a literal \\N must come back exact, or
batches would re-read or skip rows. When the destination does not load a cursor column, the batch's keys are
read first (another path). Real databases, batches of two rows so every value is once at a batch boundary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from pydantic import BaseModel

from agent19.etl.batch import run_pipeline
from agent19.etl.pipeline import parse_pipeline
from tests.conftest import _fresh_database, run_sql
from tests.test_etl_batch import DEST_DDL, _db, _fill, _pipeline

NAMES = ["a\tb", "back\\slash", "new\nline", "\\N", "é ü", "quote'\"", "cr\rlf", "\\t not a tab", "x\x0by"]


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def _rows(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def _items_pipeline(dsn: str, warehouse: str) -> str:
    """public.items from ``dsn`` into ``warehouse``, keyset on name, batches of two rows."""
    return f"""
name = "items"
batch_size = 2
[source]
dsn = "{dsn}"
table = "public.items"
cursor = ["name"]
[destination]
dsn = "{warehouse}"
table = "public.items"
key = ["name"]
"""


def test_text_cursor_values_with_escapes_walk_the_keyset_exactly_once(dsn, warehouse):
    run_sql(dsn, "CREATE TABLE items (name text COLLATE \"C\" PRIMARY KEY, v int NOT NULL)")
    run_sql(warehouse, "CREATE TABLE items (name text PRIMARY KEY, v int)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, name in enumerate(NAMES):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (name, i))
    text = _items_pipeline(dsn, warehouse)
    first = run_pipeline(parse_pipeline(text), _db(dsn))
    assert (first.extracted, first.inserted, first.unchanged) == (len(NAMES), len(NAMES), 0)
    assert first.watermark == [max(NAMES, key=lambda n: n.encode())]  # the exact last value, unescaped
    same = "SELECT name, v FROM items ORDER BY name COLLATE \"C\""
    assert _rows(dsn, same) == _rows(warehouse, same)
    again = run_pipeline(parse_pipeline(text), _db(dsn))
    assert again.extracted == 0 and again.resumed_from == first.watermark


def test_a_cursor_column_the_destination_does_not_load_reads_keys_first(dsn, warehouse):
    _fill(dsn, 1000)
    run_sql(warehouse, DEST_DDL.replace(",\n                               updated_at timestamptz", ""))
    text = _pipeline(dsn, warehouse, batch=300, transform=False)
    first = run_pipeline(parse_pipeline(text), _db(dsn))
    assert (first.extracted, first.inserted, first.batches) == (1000, 1000, 4)
    run_sql(dsn, "UPDATE orders SET amount = amount + 1, updated_at = clock_timestamp() WHERE id <= 10")
    second = run_pipeline(parse_pipeline(text), _db(dsn))
    assert (second.extracted, second.updated, second.inserted) == (10, 10, 0)
    query = "SELECT id, email, amount, status FROM {} ORDER BY id"
    assert _rows(dsn, query.format("orders")) == _rows(warehouse, query.format("analytics.orders"))


class Meta(BaseModel):
    tags: list[str]


class Record(BaseModel):
    id: int
    meta: Meta
    updated_at: datetime


@pytest.mark.parametrize("library_model", [True, False], ids=["library-model", "transform-json-field"])
def test_json_values_and_nested_models_load_as_json(dsn, warehouse, library_model):
    """A [transform] field of type json is read as an attribute (its dict loads as jsonb); a library caller's model
    with a nested model is dumped first (the nested model loads as its JSON)."""
    run_sql(dsn, "CREATE TABLE docs (id bigint PRIMARY KEY, meta jsonb NOT NULL, updated_at timestamptz NOT NULL "
                 "DEFAULT clock_timestamp()); INSERT INTO docs (id, meta) SELECT g, jsonb_build_object('tags', "
                 "jsonb_build_array('t' || g, 'x')) FROM generate_series(1, 50) g")
    run_sql(warehouse, "CREATE TABLE docs (id bigint PRIMARY KEY, meta jsonb, updated_at timestamptz)")
    text = f"""
name = "docs"
batch_size = 20
[source]
dsn = "{dsn}"
table = "public.docs"
cursor = ["updated_at", "id"]
[destination]
dsn = "{warehouse}"
table = "public.docs"
key = ["id"]
[transform.id]
type = "int"
[transform.meta]
type = "json"
[transform.updated_at]
type = "datetime"
"""
    result = run_pipeline(parse_pipeline(text), _db(dsn), model=Record if library_model else None)
    assert result.inserted == 50 and result.rejected == 0
    same = "SELECT id, meta, updated_at FROM docs ORDER BY id"
    assert _rows(dsn, same) == _rows(warehouse, same)


def test_the_run_lock_is_released_when_the_run_returns(dsn, warehouse):
    """The next run of a pipeline may start at once (a scheduler, a retry): its lock on the destination is let go
    before run_pipeline returns, not whenever the closed session's server process exits (CI saw the second run of
    the test above refused: "another run of pipeline 'items' holds its lock")."""
    run_sql(dsn, "CREATE TABLE items (name text PRIMARY KEY, v int NOT NULL)")
    run_sql(warehouse, "CREATE TABLE items (name text PRIMARY KEY, v int)")
    run_sql(dsn, "INSERT INTO items SELECT 'n' || g, g FROM generate_series(1, 5) g")
    text = _items_pipeline(dsn, warehouse)
    with psycopg.connect(warehouse, autocommit=True) as watcher:
        for _ in range(5):
            run_pipeline(parse_pipeline(text), _db(dsn))
            held = watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
            assert held == 0
