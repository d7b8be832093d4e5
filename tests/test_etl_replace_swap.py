"""Strategy replace by swap, on a real server: readers are not blocked during the load (observed from another
session), ACCESS EXCLUSIVE only for the swap (observed in pg_locks), what users rely on is carried to the new
table, what cannot be carried refuses the run by name, a kill -9 mid-load leaves the destination as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.etl.batch import run_pipeline
from agent19.etl.pipeline import parse_pipeline
from tests.conftest import _fresh_database, one, run_sql, session_settings
from tests.test_etl_batch import CHECKSUM, DEST_DDL, ROOT, SOURCE_DDL, _db, _pipeline

OLD = 3000
SHADOWS = "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_agent19\\_swap\\_%'"


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def _seed(source: str, dest: str, rows: int = 5000, dest_ddl: str = DEST_DDL) -> None:
    run_sql(source, SOURCE_DDL)
    run_sql(source, f"INSERT INTO orders (id, email, amount, updated_at) SELECT g, 'u' || g || '@x.org', g, "
                    f"'2026-01-01'::timestamptz + g * interval '1 s' FROM generate_series(1, {rows}) g")
    run_sql(dest, dest_ddl)


def _sum(dsn: str, table: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(CHECKSUM.format(table)).fetchone()


def _replace(source: str, dest: str, extra: str = "", batch: int = 250) -> str:
    text = _pipeline(source, dest, strategy="replace", batch=batch, transform=False)
    return text.replace('strategy = "replace"', f'strategy = "replace"\n{extra}')


def test_readers_keep_reading_during_the_load_and_access_exclusive_is_taken_only_for_the_swap(dsn, warehouse):
    _seed(dsn, warehouse)
    run_sql(warehouse, f"INSERT INTO analytics.orders (id, email) SELECT g + 100000, 'old' FROM "
                       f"generate_series(1, {OLD}) g")
    old_oid = one(warehouse, "SELECT 'analytics.orders'::regclass::oid")
    mid_load: list[tuple[int, set[str], bool]] = []  # (rows a reader saw, the loader's lock modes, anyone waiting)
    swap_wait: dict[str, object] = {}
    reader = psycopg.connect(warehouse, autocommit=True)
    reader.execute("SET lock_timeout = '2s'")  # a blocked read fails instead of waiting
    blocker = psycopg.connect(warehouse)  # holds ACCESS SHARE after the last batch: the swap has to wait for it

    def locks(conn: psycopg.Connection) -> list[tuple]:
        return conn.execute("SELECT pid, mode, granted FROM pg_locks WHERE relation = %s AND pid <> pg_backend_pid()",
                            (old_oid,)).fetchall()

    def watch_swap() -> None:  # sees the swap's ACCESS EXCLUSIVE request wait, then lets it through
        with psycopg.connect(warehouse, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = [m for _, m, granted in locks(watcher) if not granted]
                if waiting:
                    swap_wait["modes"] = waiting
                    break
                time.sleep(0.01)
        swap_wait["blocker_saw"] = blocker.execute("SELECT count(*) FROM analytics.orders").fetchone()[0]
        blocker.commit()

    watcher = threading.Thread(target=watch_swap)

    def progress(done: float, total: float | None, message: str | None) -> None:  # between batches, mid-load
        seen = reader.execute("SELECT count(*) FROM analytics.orders").fetchone()[0]
        held = locks(reader)
        mid_load.append((seen, {m for _, m, granted in held if granted}, any(not g for _, _, g in held)))
        if done == 5000:
            blocker.execute("SELECT count(*) FROM analytics.orders")  # ACCESS SHARE, transaction left open
            watcher.start()

    try:
        result = run_pipeline(parse_pipeline(_replace(dsn, warehouse)), _db(dsn), progress=progress)
    finally:
        if watcher.is_alive():
            watcher.join(timeout=60)
        reader.close()
        blocker.close()
    assert result.batches == 20 and result.replaced == OLD and result.inserted == 5000 and result.replace_by == "swap"
    assert len(mid_load) == 20
    assert {seen for seen, _, _ in mid_load} == {OLD}  # every read during the load returned the old rows at once
    held = set().union(*(modes for _, modes, _ in mid_load))
    assert "ShareLock" in held and held <= {"ShareLock", "AccessShareLock"}, held  # blocks writers, never readers
    assert not any(waiting for _, _, waiting in mid_load)
    assert swap_wait["modes"] == ["AccessExclusiveLock"]  # requested only after the last batch: for the swap
    assert swap_wait["blocker_saw"] == OLD
    assert _sum(dsn, "orders") == _sum(warehouse, "analytics.orders")
    assert one(warehouse, "SELECT 'analytics.orders'::regclass::oid") != old_oid  # a new table took its place
    assert one(warehouse, SHADOWS) == 0
    assert any("carried to the new table" in note for note in result.swap)


CARRY_DDL = """
CREATE SCHEMA analytics;
CREATE TABLE analytics.statuses (status text PRIMARY KEY);
INSERT INTO analytics.statuses VALUES ('new'), ('paid'), ('shipped');
CREATE TABLE analytics.orders (
    id bigint CONSTRAINT orders_id_pk PRIMARY KEY, email text CONSTRAINT orders_email_uq UNIQUE,
    amount numeric(12,2) CONSTRAINT amount_positive CHECK (amount >= 0),
    status text CONSTRAINT orders_status_fk REFERENCES analytics.statuses, updated_at timestamptz,
    n bigserial, ext bigint GENERATED BY DEFAULT AS IDENTITY, note text DEFAULT 'fresh'
) WITH (fillfactor = 90, toast.autovacuum_enabled = false);
CREATE INDEX orders_by_amount ON analytics.orders (amount DESC) WHERE amount > 10;
CREATE INDEX orders_lower_email ON analytics.orders (lower(email));
CREATE STATISTICS orders_stats (ndistinct) ON amount, status FROM analytics.orders;
ALTER TABLE analytics.orders ALTER COLUMN email SET STATISTICS 500, REPLICA IDENTITY FULL,
    CLUSTER ON orders_lower_email;
COMMENT ON TABLE analytics.orders IS 'orders, reloaded nightly';
COMMENT ON COLUMN analytics.orders.amount IS 'in euros';
COMMENT ON INDEX analytics.orders_by_amount IS 'big orders';
COMMENT ON CONSTRAINT orders_id_pk ON analytics.orders IS 'the key';
CREATE ROLE {r}_owner NOLOGIN; CREATE ROLE {r}_reader NOLOGIN; CREATE ROLE {r}_auditor NOLOGIN;
GRANT CREATE, USAGE ON SCHEMA analytics TO {r}_owner;
ALTER TABLE analytics.statuses OWNER TO {r}_owner;
ALTER TABLE analytics.orders OWNER TO {r}_owner;
GRANT SELECT ON analytics.orders TO {r}_reader WITH GRANT OPTION;
GRANT SELECT (id, status) ON analytics.orders TO {r}_auditor;
GRANT USAGE ON SCHEMA analytics TO {r}_reader, {r}_auditor;
INSERT INTO analytics.orders (id, email, status) SELECT g + 100000, 'old' || g, 'new' FROM generate_series(1, 300) g;
CREATE FUNCTION analytics.stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.note := 'stamped'; RETURN NEW; END$$;
CREATE TRIGGER stamp BEFORE INSERT ON analytics.orders FOR EACH ROW WHEN (NEW.amount > 1000) EXECUTE FUNCTION
    analytics.stamp();
CREATE TRIGGER off_duty BEFORE UPDATE ON analytics.orders FOR EACH ROW EXECUTE FUNCTION analytics.stamp();
ALTER TABLE analytics.orders DISABLE TRIGGER off_duty;
COMMENT ON TRIGGER stamp ON analytics.orders IS 'marks big orders';
ALTER TABLE analytics.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY small_only ON analytics.orders FOR SELECT TO {r}_auditor USING (amount <= 1500);
COMMENT ON POLICY small_only ON analytics.orders IS 'auditors see small orders';
"""
DEFINITION = """
SELECT (SELECT array_agg(indexname || ': ' || regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON') ORDER BY indexname)
          FROM pg_indexes WHERE schemaname = 'analytics' AND tablename = 'orders') AS indexes,
       (SELECT array_agg(conname || ': ' || pg_get_constraintdef(oid) ORDER BY conname) FROM pg_constraint
         WHERE conrelid = 'analytics.orders'::regclass) AS constraints,
       (SELECT array_agg(stxname) FROM pg_statistic_ext WHERE stxrelid = 'analytics.orders'::regclass) AS stats,
       (SELECT attstattarget FROM pg_attribute WHERE attrelid = 'analytics.orders'::regclass AND attname = 'email')
         AS stattarget,
       c.reloptions, (SELECT reloptions FROM pg_class WHERE oid = c.reltoastrelid) AS toast_options,
       c.relreplident, pg_get_userbyid(c.relowner) AS owner, c.relacl::text[] AS acl,
       (SELECT array_agg(attname || '=' || attacl::text ORDER BY attname) FROM pg_attribute
         WHERE attrelid = c.oid AND attacl IS NOT NULL) AS column_acl,
       obj_description(c.oid, 'pg_class') AS comment, col_description(c.oid, 4) AS amount_comment,
       obj_description('analytics.orders_by_amount'::regclass, 'pg_class') AS index_comment,
       (SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint WHERE conname = 'orders_id_pk') AS pk_comment,
       (SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = c.oid AND indisclustered) AS clustered,
       pg_get_serial_sequence('analytics.orders', 'n') AS serial_seq,
       (SELECT array_agg(tgname || ' ' || tgenabled::text || ' ' || coalesce(obj_description(oid, 'pg_trigger'), '')
                         || ' ' || regexp_replace(pg_get_triggerdef(oid), ' ON \\S+ ', ' ON ') ORDER BY tgname)
          FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal) AS triggers,
       (SELECT array_agg(format('%s %s %s %s %s %s', policyname, permissive, roles, cmd, qual, with_check))
          FROM pg_policies WHERE schemaname = 'analytics' AND tablename = 'orders') AS policies,
       (SELECT obj_description(oid, 'pg_policy') FROM pg_policy WHERE polrelid = c.oid) AS policy_comment,
       c.relrowsecurity,
       pg_get_serial_sequence('analytics.orders', 'ext') AS identity_seq
  FROM pg_class c WHERE c.oid = 'analytics.orders'::regclass
"""


def _definition(dsn: str) -> dict:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(DEFINITION).fetchone()


def test_the_swap_carries_indexes_constraints_grants_owner_comments_and_sequences(dsn, warehouse):
    role = f"r{os.getpid()}"
    _seed(dsn, warehouse, rows=2000, dest_ddl=CARRY_DDL.format(r=role))
    before = _definition(warehouse)
    old_max = one(warehouse, "SELECT max(n)::int8 * 1000000 + max(ext) FROM analytics.orders")
    try:
        result = run_pipeline(parse_pipeline(_replace(dsn, warehouse)), _db(dsn))
        after = _definition(warehouse)
        assert result.replaced == 300 and result.inserted == 2000
        assert after == before
        assert one(warehouse, "SELECT min(n)::int8 * 1000000 + min(ext) FROM analytics.orders") > old_max
        assert one(warehouse, "SELECT count(*) FROM analytics.orders WHERE note = 'fresh'") == 1000
        assert one(warehouse, "SELECT count(*) FROM analytics.orders WHERE note = 'stamped'") == 1000  # it fired
        assert any("2 trigger(s)" in note for note in result.swap), result.swap
        assert one(warehouse, "SELECT count(*) FROM pg_stats WHERE schemaname = 'analytics' AND tablename = "
                              "'orders'") > 0  # analyzed before the swap
        with psycopg.connect(warehouse) as conn:  # the grants work, as the roles
            conn.execute(f"SET ROLE {role}_auditor")
            assert conn.execute("SELECT count(status) FROM analytics.orders").fetchone()[0] == 1500  # the policy
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT email FROM analytics.orders")
            conn.rollback()
            conn.execute(f"SET ROLE {role}_owner")  # sequences follow the table: the owner can still insert
            conn.execute("INSERT INTO analytics.orders (id, status) VALUES (-1, 'paid')")
            with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the foreign key came along
                conn.execute("INSERT INTO analytics.orders (id, status) VALUES (-2, 'lost')")
        assert one(warehouse, SHADOWS) == 0
    finally:
        run_sql(warehouse, "DROP SCHEMA analytics CASCADE; DROP SCHEMA IF EXISTS agent19_etl CASCADE")
        for suffix in ("owner", "reader", "auditor"):
            run_sql(warehouse, f"DROP OWNED BY {role}_{suffix}; DROP ROLE {role}_{suffix}")


def test_what_cannot_follow_the_table_refuses_by_name_and_truncate_is_the_fallback(dsn, warehouse):
    _seed(dsn, warehouse, rows=1000)
    run_sql(warehouse, "INSERT INTO analytics.orders (id, email) VALUES (1, 'old'), (2, 'old');"
                       "CREATE VIEW analytics.big AS SELECT id FROM analytics.orders WHERE amount > 10;"
                       "CREATE TABLE analytics.refunds (order_id bigint REFERENCES analytics.orders);"
                       "CREATE FUNCTION analytics.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';"
                       "CREATE TRIGGER touch BEFORE UPDATE ON analytics.orders FOR EACH ROW "
                       "EXECUTE FUNCTION analytics.touch()")
    before = _sum(warehouse, "analytics.orders")
    with pytest.raises(InputError) as refused:
        run_pipeline(parse_pipeline(_replace(dsn, warehouse)), _db(dsn))
    said = f"{refused.value.message} {refused.value.hint}"
    for name in ("view analytics.big", "foreign key refunds_order_id_fkey of table analytics.refunds",
                 "nothing was loaded", 'replace_by = "truncate"'):
        assert name in said, said
    assert "trigger" not in said  # triggers follow the table
    assert _sum(warehouse, "analytics.orders") == before and one(warehouse, SHADOWS) == 0
    run_sql(warehouse, "DROP TABLE analytics.refunds")  # TRUNCATE refuses a referenced table, as the README says
    done = run_pipeline(parse_pipeline(_replace(dsn, warehouse, 'replace_by = "truncate"')), _db(dsn))
    assert done.replaced == 2 and done.inserted == 1000 and done.replace_by == "truncate" and not done.swap
    assert _sum(dsn, "orders") == _sum(warehouse, "analytics.orders")
    assert one(warehouse, "SELECT count(*) FROM analytics.big") == 990  # the view still reads the table


def test_a_foreign_key_to_itself_and_a_function_of_its_row_type_refuse_too(dsn, warehouse):
    _seed(dsn, warehouse, rows=10)
    run_sql(warehouse, "ALTER TABLE analytics.orders ADD parent bigint CONSTRAINT orders_parent_fk REFERENCES "
                       "analytics.orders; CREATE FUNCTION analytics.total(o analytics.orders) RETURNS numeric "
                       "LANGUAGE sql AS 'SELECT o.amount'")
    with pytest.raises(InputError) as refused:
        run_pipeline(parse_pipeline(_replace(dsn, warehouse)), _db(dsn))
    said = refused.value.message
    assert "foreign key orders_parent_fk of table analytics.orders" in said and "analytics.total" in said, said
    assert one(warehouse, "SELECT count(*) FROM analytics.orders") == 0 and one(warehouse, SHADOWS) == 0


def test_a_swap_that_cannot_get_its_lock_gives_up_and_leaves_the_destination(dsn, warehouse):
    _seed(dsn, warehouse, rows=500)
    run_sql(warehouse, "INSERT INTO analytics.orders (id, email) VALUES (1, 'old')")
    text = _replace(dsn, warehouse) + "\n[retry]\nattempts = 2\nbackoff_s = 0.1\n"
    db = Database(session_settings(dsn=dsn, mode=AccessMode.EXECUTE, lock_timeout="200ms"))
    with psycopg.connect(warehouse) as holder:
        holder.execute("SELECT count(*) FROM analytics.orders")  # ACCESS SHARE until the end of the test
        with pytest.raises(InputError) as refused:
            run_pipeline(parse_pipeline(text), db)
        assert holder.execute("SELECT email FROM analytics.orders").fetchall() == [("old",)]
    said = refused.value.message
    assert "ACCESS EXCLUSIVE" in said and "200ms" in said and "2 tries" in said and "unchanged" in said, said
    assert one(warehouse, "SELECT count(*) FROM analytics.orders") == 1 and one(warehouse, SHADOWS) == 0


def test_kill_9_mid_load_leaves_the_destination_untouched_and_the_next_run_replaces(dsn, warehouse, tmp_path):
    _seed(dsn, warehouse, rows=60_000)
    run_sql(warehouse, "INSERT INTO analytics.orders (id, email) SELECT g, 'old' FROM generate_series(1, 100) g;"
                       # a slow batch: the trigger follows the table to the shadow and fires for each batch's COPY
                       "CREATE FUNCTION analytics.slow() RETURNS trigger LANGUAGE plpgsql AS "
                       "'BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END';"
                       "CREATE TRIGGER slow AFTER INSERT ON analytics.orders FOR EACH STATEMENT "
                       "EXECUTE FUNCTION analytics.slow()")
    before = _sum(warehouse, "analytics.orders")
    path = tmp_path / "replace.toml"
    path.write_text(_replace(dsn, warehouse, batch=500))
    cmd = [sys.executable, "-m", "agent19", "etl", "run", str(path), "--mode", "execute", "--format", "json"]
    env = {**os.environ, "DATABASE_URL": dsn}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with psycopg.connect(warehouse, autocommit=True) as conn:
        deadline, loading = time.monotonic() + 120, 0
        while time.monotonic() < deadline and loading < 5:  # batches going into the shadow table, seen 5 times
            loading += bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                         "'%%_agent19_swap_%%' AND pid <> pg_backend_pid()").fetchone()[0])
            time.sleep(0.02)
        assert loading == 5, "the load was never seen"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert _sum(warehouse, "analytics.orders") == before  # the old rows, readable at once
        deadline = time.monotonic() + 30  # the server notices the dead client and rolls its transaction back
        while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agent19' AND datname = "
                "current_database()").fetchone()[0]:
            time.sleep(0.05)
        assert conn.execute(SHADOWS).fetchone()[0] == 0  # its shadow table went with it
        conn.execute("DROP TRIGGER slow ON analytics.orders")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"replaced": 100' in done.stdout
    assert _sum(dsn, "orders") == _sum(warehouse, "analytics.orders")


def test_a_writer_waits_for_the_swap_and_then_writes_into_the_new_table(dsn, warehouse):
    """Writers wait on the load's SHARE lock (a row written into the old table would be dropped with it); when the
    swap commits, the waiting INSERT looks the name up again and lands in the new table."""
    _seed(dsn, warehouse, rows=2000)
    run_sql(warehouse, "INSERT INTO analytics.orders (id, email) VALUES (1, 'old')")
    waited: dict[str, object] = {}

    def write() -> None:
        with psycopg.connect(warehouse, autocommit=True) as w:
            w.execute("INSERT INTO analytics.orders (id, email) VALUES (999999, 'written during the load')")
            waited["done"] = True

    writer = threading.Thread(target=write)

    def progress(done: float, total: float | None, message: str | None) -> None:
        if writer.ident is None:
            writer.start()
            with psycopg.connect(warehouse, autocommit=True) as watch:  # the INSERT waits for the load's lock
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not watch.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'RowExclusiveLock' AND relation = "
                        "'analytics.orders'::regclass").fetchone()[0]:
                    time.sleep(0.01)
                waited["seen"] = time.monotonic() < deadline
        assert "done" not in waited  # still waiting while batches load

    result = run_pipeline(parse_pipeline(_replace(dsn, warehouse)), _db(dsn), progress=progress)
    writer.join(timeout=30)
    assert waited == {"seen": True, "done": True}
    assert result.replaced == 1 and result.inserted == 2000
    assert one(warehouse, "SELECT email FROM analytics.orders WHERE id = 999999") == "written during the load"
    assert one(warehouse, "SELECT count(*) FROM analytics.orders") == 2001


def test_a_member_of_the_owner_role_replaces_without_superuser(dsn, warehouse):
    """As an application runs it: a non-superuser login that is a member of the table's owner role."""
    from tests.conftest import owner_login

    loader = owner_login(warehouse, "etlswap")  # owns the database and schema public (CREATE for the state tables)
    role = psycopg.conninfo.conninfo_to_dict(loader)["user"]
    _seed(dsn, warehouse, rows=500)
    run_sql(warehouse, f"CREATE ROLE {role}_app NOLOGIN; GRANT {role}_app TO {role}; "
                       f"GRANT CREATE, USAGE ON SCHEMA analytics TO {role}_app; "
                       f"ALTER TABLE analytics.orders OWNER TO {role}_app; "
                       f"INSERT INTO analytics.orders (id, email) VALUES (1, 'old')")
    try:
        result = run_pipeline(parse_pipeline(_replace(dsn, loader)), _db(dsn))
        assert result.replaced == 1 and result.inserted == 500
        assert one(warehouse, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = "
                              "'analytics.orders'::regclass") == f"{role}_app"
        assert _sum(dsn, "orders") == _sum(warehouse, "analytics.orders")
    finally:
        run_sql(warehouse, f"DROP SCHEMA analytics CASCADE; DROP OWNED BY {role}_app; DROP ROLE {role}_app")
