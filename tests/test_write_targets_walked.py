"""Every walker sees the table a statement writes (or creates, or references) — not only the tables it reads.

pglast's JSON tags a node with its type only where the grammar allows any node; a field typed as a relation (an
UPDATE's or DELETE's target, CREATE TABLE's name, a foreign key's referenced table, SELECT INTO's table) is left
untagged, and `agent19.sqltree.walk` did not yield it. Each walker that looked for relations missed them: the index
advisor said of `DELETE FROM t WHERE a = 5` "no candidate index: the query has no predicate, join or order to
index". walk now yields them as RangeVars, and the advisor reads an UPDATE/DELETE's predicate as a SELECT's.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from agent19.config import Settings
from agent19.db import Database
from agent19.migrate.parse import parse_sql
from agent19.optimize.advisor import advise
from agent19.sqltree import walk
from tests.conftest import need
from tests.test_advisor import _hypopg_available

STATEMENTS = {
    "INSERT INTO s.w (a) SELECT a FROM s.r": {"s.w", "s.r"},
    "UPDATE s.w SET a = 1 FROM s.r WHERE s.w.a = s.r.a": {"s.w", "s.r"},
    "DELETE FROM s.w USING s.r WHERE s.w.a = s.r.a": {"s.w", "s.r"},
    "MERGE INTO s.w USING s.r ON s.w.a = s.r.a WHEN MATCHED THEN DELETE": {"s.w", "s.r"},
    "CREATE TABLE s.w (a int REFERENCES s.r (a))": {"s.w", "s.r"},
    "ALTER TABLE s.w ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES s.r (a)": {"s.w", "s.r"},
    "SELECT * INTO s.w FROM s.r": {"s.w", "s.r"},
    "CREATE INDEX ON s.w (a)": {"s.w"},
    "WITH d AS (DELETE FROM s.w RETURNING a) SELECT * FROM d": {"s.w", "None.d"},  # d: the CTE, by name
}


@pytest.mark.parametrize("sql", list(STATEMENTS))
def test_walk_yields_every_relation_a_statement_names(sql: str) -> None:
    (st,) = parse_sql(sql)
    found = {f"{f.get('schemaname')}.{f['relname']}" for node, f in walk(st.tree) if node == "RangeVar"}
    assert found == STATEMENTS[sql], found


@pytest.fixture
def table(dsn: str) -> Iterator[Database]:
    with psycopg.connect(dsn, autocommit=True) as c:
        need(_hypopg_available(dsn), "the hypopg extension is not installed on the test server")
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b text)")
        c.execute("INSERT INTO t SELECT g, g % 1000, 'x' FROM generate_series(1, 100000) g")
        c.execute("CREATE TABLE u (a int, c int)")
        c.execute("INSERT INTO u SELECT g, g % 50 FROM generate_series(1, 2000) g")
        c.execute("ANALYZE t; ANALYZE u")
    db = Database(Settings.load(dsn=dsn, mode="dry-run", allow_privileged_reads=True))
    yield db
    db.close()


@pytest.mark.parametrize("sql", ["DELETE FROM t WHERE a = 5", "UPDATE t SET b = 'y' WHERE a = 5",
                                 "DELETE FROM public.t USING u WHERE t.a = u.a AND u.c = 7 AND t.a = 5"])
def test_the_advisor_indexes_the_rows_a_write_changes(table: Database, sql: str) -> None:
    advice = advise(table, [(sql, 1.0, None)])
    recs = [(r.table, r.columns) for r in advice.recommendations]
    assert ("public.t", ["a"]) in recs, (advice.recommendations, advice.notes)
    assert not any("no predicate" in n for n in advice.notes), advice.notes
