"""A large migration is linted one statement at a time: trees kept as JSON text and decoded on demand give the
same report as trees held decoded, and what the engine reads of a tree (node types present) is exact."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from agent19.migrate import parse
from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint.engine import lint
from agent19.migrate.parse import parse_sql
from agent19.sqltree import walk

# every kind of state a rule reads of earlier statements: created tables, CHECKs validated later, explicit
# transactions (open, nested, never closed), a foreign key whose index comes later, an enum value used in its own
# transaction, a primary key attached from an index built earlier, repeated ALTERs of one table, json columns
MIGRATION = """
SET lock_timeout = '5s';
CREATE TABLE orders (id int PRIMARY KEY, customer_id bigint, note varchar(20), meta json);
ALTER TABLE orders ADD CONSTRAINT orders_note_check CHECK (note IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_note_check;
RESET lock_timeout;
ALTER TABLE customers ADD COLUMN tags json, ADD COLUMN n int NOT NULL;
ALTER TABLE customers ALTER COLUMN name TYPE varchar(40);
ALTER TABLE lines ADD CONSTRAINT lines_order_fk FOREIGN KEY (order_id) REFERENCES orders (id);
BEGIN;
ALTER TABLE customers ALTER COLUMN email SET NOT NULL;
UPDATE customers SET n = 1 WHERE n IS NULL;
BEGIN;
ALTER TYPE status ADD VALUE 'refunded';
UPDATE customers SET status = 'refunded' WHERE id = 1;
COMMIT;
CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_idx ON accounts (id);
ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX accounts_pkey_idx;
CREATE INDEX lines_order_id_idx ON lines (order_id);
DROP SCHEMA old CASCADE;
BEGIN;
SELECT '"ColumnDef"' AS looks_like_a_node;
"""


def _report(sql: str) -> dict:
    return asdict(lint([load_text(sql)], pg_version=150000))


def test_trees_decoded_on_demand_lint_the_same(monkeypatch):
    held = _report(MIGRATION)
    assert held["summary"]["by_rule"].get("A19023") and held["summary"]["by_rule"].get("A19037")  # json, BEGIN
    monkeypatch.setattr(parse, "KEEP_DECODED_CHARS", 0)  # every tree kept as JSON text only, as in a large file
    assert all(s.__dict__["_tree"] is None for s in parse_sql(MIGRATION))
    migration = load_text(MIGRATION)
    assert asdict(lint([migration], pg_version=150000)) == held
    assert all(s.__dict__["_tree"] is None for s in migration.statements)  # let go again once linted


def test_trees_decoded_before_the_lint_stay_decoded():
    migration = load_text(MIGRATION)  # small: decoded at parse
    trees = [s.tree for s in migration.statements]
    lint([migration], pg_version=150000)
    assert all(s.tree is t for s, t in zip(migration.statements, trees, strict=True))


def test_tree_read_on_demand_is_the_parsed_tree(monkeypatch):
    held = parse_sql(MIGRATION)
    monkeypatch.setattr(parse, "KEEP_DECODED_CHARS", 0)
    lazy = parse_sql(MIGRATION)
    assert [s.tree for s in lazy] == [s.tree for s in held]
    s = lazy[1]
    assert s.hold_tree() is False and s.hold_tree() is True  # decoded by the first call, held since
    tree = s.tree
    assert s.tree is tree and s.fields["tableElts"]
    s.release_tree()
    assert s.tree is not tree and s.tree == tree  # decoded again from its text
    assert s.with_index(9).tree == tree and s.with_index(9).index == 9 and s.index == 1
    s.tree = {}  # released for good (agent19.migrate.parse.release_trees)
    assert s.tree == {} and s.fields == {}


@pytest.mark.parametrize("node_type", ["ColumnDef", "Constraint", "RangeVar", "A_Const", "TypeName", "FuncCall"])
def test_may_contain_never_misses_a_node(node_type):
    for s in parse_sql(MIGRATION):
        present = any(n == node_type for n, _ in walk(s.tree))
        assert s.may_contain(node_type) or not present, (node_type, s.sql)
    select = parse_sql(MIGRATION)[-1]
    assert select.may_contain("ColumnDef") is False  # the quoted text inside the string literal is no node
    assert json.loads(select.__dict__["_tree_json"])["stmt"] == select.tree


@pytest.mark.parametrize("node_type", ["ColumnDef", "Constraint", "RangeVar", "String"])
def test_rules_see_every_node_of_a_type_in_walk_order(node_type):
    from agent19.migrate.lint.rules._base import MigrationState, StatementContext

    migration = load_text(MIGRATION)
    for s in migration.statements:
        ctx = StatementContext(s, [], migration, None, 150000, None, MigrationState())
        assert list(ctx.nodes(node_type)) == [f for n, f in walk(s.tree) if n == node_type], s.sql
