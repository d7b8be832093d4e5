"""index_health on a real server: each kind of finding built and reported."""

from __future__ import annotations

import psycopg

from agent19.config import Settings
from agent19.db import Database
from agent19.optimize.hygiene import index_health

SETUP = """
CREATE TABLE parents (id int PRIMARY KEY);
CREATE TABLE kids (id int PRIMARY KEY, parent_id int REFERENCES parents, a int, b int, note text);
INSERT INTO parents SELECT generate_series(1, 1000);
INSERT INTO kids SELECT g, 1 + g % 1000, g % 7, g, md5(g::text) FROM generate_series(1, 100000) g;
CREATE INDEX kids_a_idx ON kids (a);
CREATE INDEX kids_a_b_idx ON kids (a, b);
CREATE INDEX kids_note_idx ON kids (note);
CREATE TABLE tiny (id int, v int);
INSERT INTO tiny VALUES (1, 1);
DELETE FROM kids WHERE id % 10 <> 0;
"""


def test_index_health_finds_each_problem(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
        conn.execute("VACUUM ANALYZE kids")
        conn.execute("INSERT INTO tiny VALUES (2, 1)")
        try:
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY tiny_id_v_idx ON tiny (v)")
        except psycopg.errors.UniqueViolation:
            pass  # leaves an INVALID index behind, as in production
    db = Database(Settings.load(dsn=dsn))
    try:
        health = index_health(db, unused_min_bytes=1, bloat_min_bytes=1_000_000)
    finally:
        db.close()
    by = {(f.kind, f.index or f.table) for f in health.findings}
    assert ("duplicate", "public.kids_a_idx") in by
    assert ("invalid", "public.tiny_id_v_idx") in by
    assert ("fk_without_index", "public.kids") in by
    assert ("unused", "public.kids_note_idx") in by
    assert ("unused", "public.kids_pkey") not in by  # backs a constraint
    assert ("bloat", "public.kids_note_idx") in by
    dup = next(f for f in health.findings if f.kind == "duplicate")
    assert dup.destructive and dup.fix == "DROP INDEX CONCURRENTLY public.kids_a_idx;"
    assert dup.evidence["covered_by"] == "public.kids_a_b_idx"
    fk = next(f for f in health.findings if f.kind == "fk_without_index")
    assert not fk.destructive and fk.fix == "CREATE INDEX CONCURRENTLY ON public.kids (parent_id);"
    assert health.stats_since
