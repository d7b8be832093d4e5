"""A change list's add_foreign_key that the live database already has is not added a second time."""

from __future__ import annotations

import psycopg
import pytest

from agent19.db.catalog import snapshot
from agent19.errors import InputError
from agent19.migrate.planning.model import Change
from agent19.migrate.planning.plan import plan_migration


def _snap(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return snapshot(conn)


def _fks(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1")]


FK = {"type": "add_foreign_key", "table": "lines", "index_columns": ["order_id"],
      "references_table": "orders", "references_columns": ["id"]}


def test_an_existing_foreign_key_is_not_added_again_and_the_plan_says_so(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, code text UNIQUE);"
                     "CREATE TABLE lines (id bigint PRIMARY KEY, order_id bigint, code text,"
                     " CONSTRAINT lines_to_orders FOREIGN KEY (order_id) REFERENCES orders (id));"
                     "CREATE INDEX lines_order ON lines (order_id)")
    other = Change.model_validate({**FK, "index_columns": ["code"], "references_columns": ["code"]})
    plan = plan_migration(changes=[Change.model_validate(FK), other], catalog=_snap(dsn))
    # only the other foreign key (and its index) is generated
    assert "(order_id)" not in plan.sql and "FOREIGN KEY (code)" in plan.sql
    notes = [f.message for f in plan.findings if f.rule == "already-exists"]
    assert len(notes) == 1 and "already exists as lines_to_orders" in notes[0]
    for op in plan.operations:  # the plan runs, and leaves one foreign key per column list
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(op.sql)
    assert _fks(dsn) == ["lines_code_fkey", "lines_to_orders"]

    # a change list with nothing left to do says so
    with pytest.raises(InputError, match="nothing to do.*already exists as lines_to_orders"):
        plan_migration(changes=[Change.model_validate(FK)], catalog=_snap(dsn))


def test_a_not_valid_existing_foreign_key_is_validated_not_duplicated(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY); CREATE TABLE lines (id bigint, order_id bigint);"
                     "ALTER TABLE lines ADD CONSTRAINT lines_fk FOREIGN KEY (order_id) REFERENCES orders NOT VALID")
    plan = plan_migration(changes=[Change.model_validate(FK)], catalog=_snap(dsn))
    assert "ADD CONSTRAINT" not in plan.sql and "VALIDATE CONSTRAINT lines_fk" in plan.sql
    for op in plan.operations:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(op.sql)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f'").fetchall() == [
            ("lines_fk", True)]
    # a different ON DELETE is a different foreign key: still generated
    cascade = Change.model_validate({**FK, "on_delete": "cascade"})
    assert "ON DELETE CASCADE" in plan_migration(changes=[cascade], catalog=_snap(dsn)).sql
