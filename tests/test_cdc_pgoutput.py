"""cdc run with pgoutput, read through pg_logical_slot_peek_binary_changes and decoded by agent19.etl.pgoutput,
on a real server: inserts with NULLs, updates that leave a TOASTed value unchanged (sent as 'u', kept), a key
change, deletes, a quoted table name with REPLICA IDENTITY FULL and duplicate rows, truncate (reported, not
applied); a missing publication is refused before any slot exists; the MCP tool takes --plugin pgoutput."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from agent19.errors import InputError
from agent19.etl.cdc import run_cdc
from agent19.etl.pgoutput import Decoder
from tests.conftest import _fresh_database
from tests.test_etl_cdc import _db, _write

ODD = '"Odd ""Name"""'  # the table Odd "Name", quoted
DDL = ("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), tags text[], body text); "
       f'CREATE TABLE {ODD} ("Val" int, note text); ALTER TABLE {ODD} REPLICA IDENTITY FULL')
TABLES = ["items", 'public.Odd "Name"']
BIG = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g)"  # 128 kB: TOASTed
CHECK = ["SELECT id, name, price, tags, md5(body) FROM items ORDER BY id",
         f'SELECT "Val", note FROM {ODD} ORDER BY 1, 2']


@pytest.fixture
def source(dsn) -> Iterator[str]:
    _write(dsn, DDL, f"CREATE PUBLICATION agent19_cdc FOR TABLE items, {ODD}")
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
                                    ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def _run(src: str, dst: str, **kw) -> object:
    with psycopg.connect(dst, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return run_cdc(_db(src), conn, slot="agent19_pgo", tables=TABLES, plugin="pgoutput",
                       publication="agent19_cdc", **kw)


def _same(src: str, dst: str) -> None:
    with psycopg.connect(src) as a, psycopg.connect(dst) as b:
        for q in CHECK:
            assert a.execute(q).fetchall() == b.execute(q).fetchall(), q


CHANGES = [
    f"INSERT INTO items VALUES (1, 'a', 1.50, '{{x,\"y z\"}}', {BIG}), (2, NULL, NULL, NULL, NULL), (3, 'c', 3, "
    "'{}', 'small')",
    "UPDATE items SET name = 'renamed' WHERE id = 1",  # body TOASTed and unchanged: sent as 'u'
    "UPDATE items SET id = 30, name = NULL WHERE id = 3",  # a key change: the old key comes as 'K'
    "DELETE FROM items WHERE id = 2",
    f"INSERT INTO {ODD} VALUES (1, 'x'), (1, 'x'), (2, NULL)",  # duplicate rows, no key
    f"UPDATE {ODD} SET note = 'y' WHERE ctid = (SELECT min(ctid) FROM {ODD})",
    f'DELETE FROM {ODD} WHERE "Val" = 2 AND note IS NULL',
]


def test_the_decoder_reads_what_the_server_sends(source):
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('agent19_decode', 'pgoutput')")
    _write(source, *CHANGES)
    with psycopg.connect(source) as conn:
        rows = conn.execute("SELECT data FROM pg_logical_slot_peek_binary_changes('agent19_decode', NULL, NULL, "
                            "'proto_version', '1', 'publication_names', 'agent19_cdc')").fetchall()
    decoder = Decoder()
    changes = [c for c in (decoder.decode(r[0]) for r in rows) if c is not None]
    data = [c for c in changes if c["action"] in "IUD"]
    assert [c["action"] for c in changes if c["action"] in "BC"] == ["B", "C"] * len(CHANGES)
    assert [c["action"] for c in data] == ["I", "I", "I", "U", "U", "D", "I", "I", "I", "U", "D"]
    nulls = {c["name"]: c["value"] for c in data[1]["columns"]}
    assert nulls == {"id": "2", "name": None, "price": None, "tags": None, "body": None}
    assert {c["name"]: c["value"] for c in data[0]["columns"]}["tags"] == '{x,"y z"}'
    toast = data[3]
    assert [c["name"] for c in toast["columns"]] == ["id", "name", "price", "tags"]  # body: 'u', left out
    assert toast["identity"] == [{"name": "id", "value": "1"}]
    assert data[4]["identity"] == [{"name": "id", "value": "3"}]  # the old key
    assert data[5]["identity"] == [{"name": "id", "value": "2"}]
    odd = data[9]
    assert odd["table"] == 'Odd "Name"' and odd["schema"] == "public"
    assert odd["identity"] == [{"name": "Val", "value": "1"}, {"name": "note", "value": "x"}]  # FULL: the old row
    assert data[10]["identity"] == [{"name": "Val", "value": "2"}, {"name": "note", "value": None}]
    assert all(c["timestamp"] for c in changes if c["action"] in "BC")


def test_cdc_run_with_pgoutput_applies_every_change(source, warehouse):
    _write(source, "INSERT INTO items VALUES (100, 'before', 1, '{a}', 'x')")
    _write(warehouse, DDL)
    first = _run(source, warehouse)
    assert first.initial_copy == {"public.items": 1, 'public.Odd "Name"': 0}
    _write(source, *CHANGES)
    second = _run(source, warehouse)
    assert (second.inserts, second.updates, second.deletes) == (6, 3, 2), second
    _same(source, warehouse)
    with psycopg.connect(warehouse) as conn:  # the TOASTed value the update did not carry was kept
        assert conn.execute("SELECT length(body) FROM items WHERE id = 1").fetchone()[0] == 128_000
    _write(source, "TRUNCATE items")
    third = _run(source, warehouse)
    assert any("truncated public.items: not applied" in w for w in third.warnings), third.warnings
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3
    assert _run(source, warehouse, teardown=True).dropped


def test_a_missing_publication_is_refused_with_its_sql_before_any_slot(source, warehouse):
    _write(warehouse, DDL)
    _write(source, "ALTER PUBLICATION agent19_cdc DROP TABLE items")
    with pytest.raises(InputError) as refused:
        _run(source, warehouse)
    assert "does not cover public.items" in str(refused.value)
    assert "ALTER PUBLICATION agent19_cdc ADD TABLE public.items;" in str(refused.value)
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    _write(source, "DROP PUBLICATION agent19_cdc")
    with pytest.raises(InputError) as missing:
        _run(source, warehouse)
    assert f"CREATE PUBLICATION agent19_cdc FOR TABLE public.items, public.{ODD};" in str(missing.value)


@pytest.mark.asyncio
async def test_cdc_run_pgoutput_through_the_mcp_client(source, warehouse):
    from tests.mcp_client import stdio_session

    _write(warehouse, DDL)
    _write(source, "INSERT INTO items VALUES (1, 'a', 1, NULL, 'b')")
    args = {"tables": TABLES, "destination": "env:WAREHOUSE_URL", "slot": "agent19_mcp", "plugin": "pgoutput"}
    async with stdio_session("--mode", "execute", env={"DATABASE_URL": source, "WAREHOUSE_URL": warehouse}) as s:
        run = await s.call_tool("cdc_run", args)
        _write(source, "UPDATE items SET name = 'z' WHERE id = 1", f"INSERT INTO {ODD} VALUES (5, NULL)")
        again = await s.call_tool("cdc_run", args)
        with psycopg.connect(source) as conn:
            plugin = conn.execute("SELECT plugin FROM pg_replication_slots WHERE slot_name = 'agent19_mcp'").fetchone()
        gone = await s.call_tool("cdc_run", {**args, "teardown": True})
    assert not run.is_error, run.content
    assert plugin == ("pgoutput",)
    assert (again.structured_content["inserts"], again.structured_content["updates"]) == (1, 1), again.content
    assert gone.structured_content["dropped"]
    _same(source, warehouse)


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_a_source_truncate_is_reported_and_not_applied(source, warehouse, plugin):
    _write(warehouse, DDL)
    _write(source, "INSERT INTO items VALUES (1, 'a', 1, NULL, 'b')")
    with psycopg.connect(warehouse, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        def run() -> object:
            return run_cdc(_db(source), conn, slot="agent19_trunc", tables=TABLES, plugin=plugin,
                           publication="agent19_cdc")
        run()
        _write(source, "INSERT INTO items VALUES (2, 'b', 2, NULL, 'c')", "TRUNCATE items",
               "INSERT INTO items VALUES (3, 'c', 3, NULL, 'd')")
        after = run()
        assert any("truncated public.items: not applied" in w for w in after.warnings), after.warnings
        assert after.inserts == 2
        assert [r["id"] for r in conn.execute("SELECT id FROM items ORDER BY id")] == [1, 2, 3]
        run_cdc(_db(source), conn, slot="agent19_trunc", tables=TABLES, plugin=plugin, teardown=True)
