"""The observation oracle itself: locks from pg_locks, rewrites from relfilenode."""

import psycopg

from agent19.db.observe import observe, strongest_mode


def test_observe_reads_locks_and_rewrites_from_the_server(dsn):
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v varchar(10), n int)")
        conn.execute("INSERT INTO t SELECT g, 'x', g FROM generate_series(1, 1000) g")
        conn.commit()
        widen = observe(conn, "ALTER TABLE t ALTER COLUMN v TYPE varchar(20)")
        conn.rollback()
        assert widen.strongest("public.t") == "AccessExclusiveLock" and widen.rewritten == []
        retype = observe(conn, "ALTER TABLE t ALTER COLUMN n TYPE bigint")
        conn.rollback()
        assert "public.t" in retype.rewritten
        index = observe(conn, "CREATE INDEX t_n ON t (n)")
        conn.rollback()
        assert index.strongest("public.t") == "ShareLock" and index.rewritten == []
        update = observe(conn, "UPDATE t SET n = n + 1 WHERE id <= 10")
        conn.rollback()
        assert update.rows == 10 and update.strongest("public.t") == "RowExclusiveLock"
        assert conn.execute("SELECT count(*) FROM t WHERE n <> id").fetchone() == (0,)


def test_strongest_mode_order():
    assert strongest_mode({"ShareLock", "RowExclusiveLock"}) == "ShareLock"
    assert strongest_mode({"ShareUpdateExclusiveLock", "AccessExclusiveLock"}) == "AccessExclusiveLock"
    assert strongest_mode(set()) is None
