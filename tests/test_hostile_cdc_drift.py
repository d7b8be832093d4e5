"""A hostile review of cdc run: a column added at the source after the initial copy.

The changes carry it; the destination table lacks it, and apply dropped its values without a word (the
destination then differs from the source with nothing said). The run must say which columns of which table
were not applied — with both plugins — and still apply the rest.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.test_etl_cdc import DDL, _run, _same, _write, source, warehouse  # noqa: F401  (fixtures)


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_a_column_added_at_the_source_is_reported_as_not_applied(source, warehouse, plugin):  # noqa: F811
    _write(source, "CREATE PUBLICATION agent19_cdc FOR TABLE items, events",
           "INSERT INTO items VALUES (1, 'a', 'b'), (2, 'c', 'd')")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    assert _run(source, warehouse, plugin=plugin).initial_copy["public.items"] == 2
    quiet = _run(source, warehouse, plugin=plugin)
    assert not any("lacks" in w for w in quiet.warnings)
    _write(source, 'ALTER TABLE items ADD COLUMN "Late Note" text, ADD COLUMN "select" int',
           "UPDATE items SET name = 'renamed', \"Late Note\" = 'lost?', \"select\" = 7 WHERE id = 1",
           "INSERT INTO items VALUES (3, 'e', 'f', 'new', 8)")
    drifted = _run(source, warehouse, plugin=plugin)
    assert (drifted.inserts, drifted.updates) == (1, 1)
    said = [w for w in drifted.warnings if "lacks" in w]
    assert len(said) == 1 and "public.items" in said[0] and "Late Note, select" in said[0], drifted.warnings
    with psycopg.connect(source, autocommit=True) as conn:  # the columns both sides have are the same
        conn.execute('ALTER TABLE items DROP COLUMN "Late Note", DROP COLUMN "select"')
    _same(source, warehouse)
    _run(source, warehouse, teardown=True)
