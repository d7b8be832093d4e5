"""Each zero-downtime pattern, run phase by phase on a real server against a populated table while a
concurrent writer inserts and updates rows: the schema ends as intended, no row is lost or wrong,
and no phase takes a lock stronger than it declares (observed in pg_locks)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from agent19.migrate import patterns
from agent19.migrate.patterns.model import Pattern, Phase
from agent19.migrate.patterns.runner import PhaseFailed, run_pattern, run_phase

ROWS = 30_000

WriteFn = Callable[[psycopg.Connection[Any], int, int, "Writer"], None]


class Writer(threading.Thread):
    """A concurrent application: calls ``write(conn, i, stage, self)`` in a loop; ``stage`` counts deploys."""

    def __init__(self, dsn: str, write: WriteFn, reads: str | None = "orders") -> None:
        super().__init__(daemon=True)
        self.dsn, self.write, self.reads = dsn, write, reads
        self.stage = 0
        self.acked = 0  # the stage of the last complete iteration: a deploy is done once it catches up
        self.expected: dict[int, Any] = {}
        self.writes = 0
        self.errors: list[BaseException] = []
        self._stop_event = threading.Event()
        self.rng = random.Random(19)

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                i = 0
                while not self._stop_event.is_set():
                    i += 1
                    stage = self.stage
                    self.write(conn, i, stage, self)
                    self.writes += 1
                    if self.reads:
                        # a reader whose transaction lasts a little: CONCURRENTLY waits for such
                        # transactions, which also keeps it long enough to be seen in pg_locks
                        with conn.transaction():
                            conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {self.reads} LIMIT 10) s, "
                                         "pg_sleep(0.02)")
                    self.acked = stage
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def deploy(self, timeout: float = 30) -> None:
        """Switch the application to the next stage and wait until no old-stage request is in flight."""
        self.stage += 1
        deadline = time.monotonic() + timeout
        while self.acked < self.stage and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        assert not self.errors, f"the concurrent writer failed: {self.errors[0]!r}"
        assert self.writes > 0


@pytest.fixture
def shop(dsn: str) -> Iterator[str]:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("""
            CREATE TABLE customers (id int PRIMARY KEY, name text);
            INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
            CREATE TABLE orders (id bigserial PRIMARY KEY, amount int NOT NULL, note text, code text,
                                 customer_id int);
            INSERT INTO orders (amount, note, code, customer_id)
                 SELECT g % 1000, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END, 'c' || g, g % 100 + 1
                   FROM generate_series(1, %s) g;
            ANALYZE orders;
        """.replace("%s", str(ROWS)))
    yield dsn


def apply(dsn: str, pattern: Pattern, writer: Writer) -> list[Any]:
    """Run the pattern with the writer going; deploy (stage + 1) where the pattern says so."""

    def between(phase: Phase) -> None:
        if phase.deploy_after:
            writer.deploy()

    writer.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            runs = run_pattern(conn, pattern, dsn=dsn, between=between)
    finally:
        writer.stop()
    for run, phase in zip(runs, sorted(pattern.phases, key=lambda p: p.order), strict=True):
        assert run.within_declared, f"phase {run.name}: observed {run.observed_lock}, declared {run.declared_lock}"
        if phase.validation:
            assert run.validated
    return runs


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return c.execute(query).fetchall()


def one(dsn: str, query: str) -> Any:
    return rows(dsn, query)[0][0]


def _insert_amount(conn: psycopg.Connection[Any], i: int, stage: int, w: Writer) -> None:
    """Insert a row, and set a random old row's amount to a known value."""
    new_id = conn.execute("INSERT INTO orders (amount, note, code, customer_id) VALUES (%s, %s, %s, %s) "
                          "RETURNING id", (i, f"w{i}", f"w{i}", i % 100 + 1)).fetchone()[0]
    w.expected[new_id] = i
    target = w.rng.randint(1, ROWS)
    conn.execute("UPDATE orders SET amount = %s WHERE id = %s", (i + 5, target))
    w.expected[target] = i + 5


def _check_amounts(dsn: str, w: Writer, column: str = "amount") -> None:
    got = dict(rows(dsn, f"SELECT id, {column} FROM orders"))
    assert len(got) == ROWS + sum(1 for k in w.expected if k > ROWS)
    for k, v in w.expected.items():
        assert got[k] == v, f"row {k}: {got[k]!r} != {v!r}"
    untouched = [k for k in range(1, ROWS + 1) if k not in w.expected]
    assert all(got[k] == k % 1000 for k in untouched)


def test_set_not_null_with_default_and_backfill(shop: str) -> None:
    def write(conn: psycopg.Connection[Any], i: int, stage: int, w: Writer) -> None:
        if i % 2:
            new_id = conn.execute("INSERT INTO orders (amount) VALUES (1) RETURNING id").fetchone()[0]
            w.expected[new_id] = {"(default)", "(was null)"}  # before the default exists: backfilled
        else:
            new_id = conn.execute("INSERT INTO orders (amount, note) VALUES (1, %s) RETURNING id",
                                  (f"w{i}",)).fetchone()[0]
            w.expected[new_id] = {f"w{i}"}

    w = Writer(shop, write)
    p = patterns.set_not_null("orders", "note", default="'(default)'", backfill="'(was null)'", pg_version=15)
    runs = apply(shop, p, w)
    assert [r.observed_lock for r in runs][-2] == "ShareUpdateExclusiveLock"  # the VALIDATE
    assert one(shop, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'")
    assert one(shop, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c'") == 0
    got = dict(rows(shop, "SELECT id, note FROM orders"))
    for k in range(1, ROWS + 1):
        assert got[k] == ("(was null)" if k % 3 == 0 else f"n{k}")
    for k, v in w.expected.items():
        assert got[k] in v


def test_set_not_null_before_12_keeps_the_check() -> None:
    p = patterns.set_not_null("orders", "note", pg_version=11)
    assert [ph.name for ph in p.phases] == ["add CHECK NOT VALID", "validate the CHECK"]
    assert "12" in " ".join(p.phases[-1].notes)
    assert [ph.name for ph in patterns.set_not_null("orders", "note", pg_version=150004).phases][-1].startswith("SET")


def test_change_column_type_through_a_shadow_column(shop: str) -> None:
    w = Writer(shop, _insert_amount)
    p = patterns.change_column_type("orders", "amount", "bigint", old_type="integer", not_null=True, pg_version=15)
    runs = apply(shop, p, w)
    swap = next(r for r in runs if r.name == "swap the columns")
    assert swap.observed_lock == "AccessExclusiveLock" and swap.attempts >= 1
    assert one(shop, "SELECT format_type(atttypid, atttypmod) || attnotnull FROM pg_attribute "
                     "WHERE attrelid = 'orders'::regclass AND attname = 'amount'") == "biginttrue"
    assert one(shop, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass "
                     "AND attname LIKE 'amount_%' AND NOT attisdropped") == 0
    assert one(shop, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass") == 0
    _check_amounts(shop, w)


def test_rename_column_expand_contract(shop: str) -> None:
    def write(conn: psycopg.Connection[Any], i: int, stage: int, w: Writer) -> None:
        col = "note" if stage == 0 else "memo"  # the deploy switches the application to the new name
        new_id = conn.execute(f"INSERT INTO orders (amount, {col}) VALUES (1, %s) RETURNING id",
                              (f"w{i}",)).fetchone()[0]
        w.expected[new_id] = f"w{i}"
        target = w.rng.randint(1, ROWS)
        conn.execute(f"UPDATE orders SET {col} = %s WHERE id = %s", (f"u{i}", target))
        w.expected[target] = f"u{i}"

    w = Writer(shop, write)
    apply(shop, patterns.rename_column("orders", "note", "memo", "text", pg_version=15), w)
    assert w.stage == 1
    got = dict(rows(shop, "SELECT id, memo FROM orders"))
    for k in range(1, ROWS + 1):
        if k not in w.expected:
            assert got[k] == (None if k % 3 == 0 else f"n{k}")
    for k, v in w.expected.items():
        assert got[k] == v
    assert one(shop, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note' "
                     "AND NOT attisdropped") == 0


def test_rename_table_with_a_compatibility_view(shop: str) -> None:
    def write(conn: psycopg.Connection[Any], i: int, stage: int, w: Writer) -> None:
        table = "orders" if stage == 0 else "purchases"
        w.reads = table
        new_id = conn.execute(f"INSERT INTO {table} (amount) VALUES (%s) RETURNING id", (i,)).fetchone()[0]
        w.expected[new_id] = i

    w = Writer(shop, write)
    runs = apply(shop, patterns.rename_table("orders", "purchases", pg_version=15), w)
    assert runs[0].observed_lock == "AccessExclusiveLock"
    assert one(shop, "SELECT to_regclass('orders') IS NULL")
    got = dict(rows(shop, "SELECT id, amount FROM purchases"))
    assert len(got) == ROWS + len(w.expected)
    assert all(got[k] == v for k, v in w.expected.items())


def test_add_foreign_key_not_valid_then_validate(shop: str) -> None:
    w = Writer(shop, _insert_amount)
    p = patterns.add_foreign_key("orders", ["customer_id"], "customers", ["id"], pg_version=15)
    runs = apply(shop, p, w)
    assert [r.observed_lock for r in runs] == ["ShareRowExclusiveLock", "ShareUpdateExclusiveLock"]
    assert one(shop, "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'")
    _check_amounts(shop, w)


def test_add_check_not_valid_then_validate(shop: str) -> None:
    w = Writer(shop, _insert_amount)
    runs = apply(shop, patterns.add_check("orders", "orders_amount_positive", "amount >= 0", pg_version=15), w)
    assert runs[1].observed_lock == "ShareUpdateExclusiveLock"
    assert one(shop, "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_amount_positive'")
    _check_amounts(shop, w)


def test_add_check_validate_fails_on_a_violating_row(shop: str) -> None:
    p = patterns.add_check("orders", "orders_small", "amount < 999", pg_version=15)
    with psycopg.connect(shop, autocommit=True) as conn:
        run_phase(conn, p.phases[0], dsn=shop)
        with pytest.raises(PhaseFailed, match="validate"):
            run_phase(conn, p.phases[1], dsn=shop)


def test_add_unique_concurrently_then_using_index(shop: str) -> None:
    w = Writer(shop, _insert_amount)
    runs = apply(shop, patterns.add_unique("orders", ["code"], pg_version=15), w)
    assert runs[0].observed_lock == "ShareUpdateExclusiveLock"
    assert runs[1].observed_lock == "AccessExclusiveLock"
    assert one(shop, "SELECT contype FROM pg_constraint WHERE conname = 'orders_code_key'") == "u"
    _check_amounts(shop, w)


def test_add_primary_key_concurrently(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE events (uid bigint NOT NULL, v int);"
                  f"INSERT INTO events SELECT g, 0 FROM generate_series(1, {ROWS}) g")

    def write(conn: psycopg.Connection[Any], i: int, stage: int, w: Writer) -> None:
        conn.execute("INSERT INTO events VALUES (%s, %s)", (ROWS + i, i))
        w.expected[ROWS + i] = i

    w = Writer(dsn, write, reads="events")
    runs = apply(dsn, patterns.add_primary_key("events", ["uid"], pg_version=15), w)
    assert runs[0].observed_lock == "ShareUpdateExclusiveLock"
    assert one(dsn, "SELECT contype FROM pg_constraint WHERE conname = 'events_pkey'") == "p"
    got = dict(rows(dsn, "SELECT uid, v FROM events"))
    assert len(got) == ROWS + len(w.expected) and all(got[k] == v for k, v in w.expected.items())


def test_create_index_recovers_from_an_invalid_leftover(shop: str) -> None:
    with psycopg.connect(shop, autocommit=True) as c:
        c.execute("UPDATE orders SET code = 'dup' WHERE id IN (1, 2)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("CREATE UNIQUE INDEX CONCURRENTLY orders_code_key ON orders (code)")
        assert not c.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_code_key'::regclass"
                             ).fetchone()[0]
        c.execute("UPDATE orders SET code = 'c1' WHERE id = 1")
    w = Writer(shop, _insert_amount)
    runs = apply(shop, patterns.create_index("orders", ["code"], unique=True, pg_version=15), w)
    drop, create = runs[0].steps
    assert not drop.skipped, "the INVALID leftover was not dropped"
    assert not create.skipped and runs[0].observed_lock == "ShareUpdateExclusiveLock"
    assert one(shop, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_code_key'::regclass")
    w.expected[1] = w.expected.get(1, 1)
    w.expected[2] = w.expected.get(2, 2)
    _check_amounts(shop, w)


def test_create_index_skips_recovery_when_nothing_is_left(shop: str) -> None:
    p = patterns.create_index("orders", ["customer_id", "(lower(note))"], where="note IS NOT NULL", pg_version=15)
    with psycopg.connect(shop, autocommit=True) as conn:
        run = run_phase(conn, p.phases[0], dsn=shop)
    assert run.steps[0].skipped and not run.steps[1].skipped
    definition = one(shop, "SELECT pg_get_indexdef('orders_customer_id_lower_note_idx'::regclass)")
    assert "WHERE (note IS NOT NULL)" in definition


@contextmanager
def reader_holding(dsn: str, table: str, seconds: float = 0.5) -> Iterator[None]:
    """A transaction that has read ``table`` and stays open ``seconds``: a CONCURRENTLY statement started meanwhile
    waits for it while holding its lock, so the watcher sees the lock however loaded the machine is (the writer's
    own 20 ms readers left a gap: on a busy CI machine a DROP INDEX CONCURRENTLY fell between two samples)."""
    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute(f"SELECT count(*) FROM {table}")
            ready.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    ready.wait(10)
    try:
        yield
    finally:
        holder.join(seconds + 10)


def test_drop_index_and_reindex_concurrently(shop: str) -> None:
    with psycopg.connect(shop, autocommit=True) as c:
        c.execute("CREATE INDEX orders_customer_idx ON orders (customer_id)")
    w = Writer(shop, _insert_amount)
    with reader_holding(shop, "orders"):
        runs = apply(shop, patterns.reindex("orders_customer_idx", table="orders", pg_version=15), w)
    assert runs[0].observed_lock == "ShareUpdateExclusiveLock"
    w2 = Writer(shop, _insert_amount)
    w2.expected = w.expected
    with reader_holding(shop, "orders"):
        runs = apply(shop, patterns.drop_index("orders_customer_idx", table="orders", pg_version=15), w2)
    assert runs[0].observed_lock == "ShareUpdateExclusiveLock"
    assert one(shop, "SELECT to_regclass('orders_customer_idx') IS NULL")
    _check_amounts(shop, w2)


def test_reindex_before_12_builds_a_copy(shop: str) -> None:
    with psycopg.connect(shop, autocommit=True) as c:
        c.execute("CREATE INDEX orders_customer_idx ON orders (customer_id)")
    p = patterns.reindex("orders_customer_idx", table="orders", definition="USING btree (customer_id)",
                         pg_version=11)
    assert len(p.phases) == 3
    with psycopg.connect(shop, autocommit=True) as conn:
        run_pattern(conn, p, dsn=shop)
    assert one(shop, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_customer_idx'::regclass")


def test_add_column_with_a_volatile_default(shop: str) -> None:
    def write(conn: psycopg.Connection[Any], i: int, stage: int, w: Writer) -> None:
        new_id = conn.execute("INSERT INTO orders (amount) VALUES (%s) RETURNING id", (i,)).fetchone()[0]
        w.expected[new_id] = i

    w = Writer(shop, write)
    with psycopg.connect(shop) as c:
        before = c.execute("SELECT relfilenode FROM pg_class WHERE relname = 'orders'").fetchone()[0]
    p = patterns.add_column_volatile_default("orders", "token", "float8", "random()", pg_version=15)
    runs = apply(shop, p, w)
    assert all(r.within_declared for r in runs)
    assert one(shop, "SELECT relfilenode FROM pg_class WHERE relname = 'orders'") == before, "table was rewritten"
    assert one(shop, "SELECT count(*) FROM orders WHERE token IS NULL") == 0
    assert one(shop, "SELECT count(DISTINCT token) > 1000 FROM orders")
    assert one(shop, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'token'")
    got = dict(rows(shop, "SELECT id, amount FROM orders"))
    assert len(got) == ROWS + len(w.expected) and all(got[k] == v for k, v in w.expected.items())


@pytest.mark.parametrize("make", [
    lambda v: patterns.set_not_null("s.t", "c", pg_version=v),
    lambda v: patterns.change_column_type("s.t", "c", "bigint", pg_version=v),
    lambda v: patterns.rename_column("s.t", "c", "d", "int", not_null=True, pg_version=v),
    lambda v: patterns.add_unique("s.t", ["c"], pg_version=v),
    lambda v: patterns.reindex("s.i", table="s.t", definition="(c)", pg_version=v),
])
@pytest.mark.parametrize("version", [11, 12, 15, 17])
def test_every_pattern_is_well_formed(make: Callable[[int], Pattern], version: int) -> None:
    p = make(version)
    assert [ph.order for ph in p.phases] == list(range(1, len(p.phases) + 1))
    assert p.pg_version == version
    for ph in p.phases:
        assert ph.operations or ph.backfill, ph.name
        assert ph.lock is not None
    assert "phase 1" in p.to_sql()
