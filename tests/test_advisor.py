"""The index advisor on a real server with HypoPG: verified advice, and none where it is not needed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db import Database
from agent19.errors import InputError
from agent19.optimize.advisor import advise
from agent19.optimize.candidates import Candidate, TableInfo, candidates, query_shape
from agent19.optimize.explain import explain
from tests.conftest import need
from tests.test_optimize_dataset import shop_dsn

SLOW = "SELECT id, amount FROM orders WHERE status = 'refunded' AND amount > 900"


def _hypopg_available(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'hypopg')"
                            ).fetchone() == (True,)


@pytest.fixture(scope="module")
def shop(pg) -> str:
    dsn = shop_dsn(pg)
    need(_hypopg_available(dsn), "the hypopg extension is not installed on the test server")
    return dsn


@pytest.fixture
def dry_run(shop) -> Iterator[Database]:
    db = Database(Settings.load(dsn=shop, mode="dry-run"))
    yield db
    db.close()


def _buffers(db: Database, sql: str) -> int:
    b = explain(db, sql, settings=["jit=off"]).plan.root.buffers
    assert b is not None
    return b.shared_hit + b.shared_read


def test_recommends_a_verified_index_that_makes_the_query_faster(dry_run, shop):
    advice = advise(dry_run, [(SLOW, 1.0, None)])
    assert "rolled back" in advice.hypopg  # hypopg is not created in the shop database: dry-run creates it
    assert len(advice.recommendations) == 1, advice
    rec = advice.recommendations[0]
    # 'refunded' is 0.1 % of a 4-value column: the partial index is as fast as (status, amount) and far smaller
    assert rec.table == "public.orders" and rec.columns == ["amount"] and rec.where == "status = 'refunded'", rec
    assert rec.verified_by == "hypopg" and advice.verification == "hypopg"
    assert rec.sql.startswith("CREATE INDEX CONCURRENTLY ")
    assert rec.cost_after < rec.cost_before * 0.1 and rec.improvement > 0.9
    assert rec.estimated_size_bytes and rec.estimated_size_bytes > 0
    assert rec.existing_indexes == 3
    with psycopg.connect(shop, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'").fetchone() == (0,)

    before = _buffers(dry_run, SLOW)
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(rec.sql)
        conn.execute("ANALYZE orders")
    try:
        after = _buffers(dry_run, SLOW)
        assert after * 20 < before, (before, after)  # pages touched by the real EXPLAIN ANALYZE
    finally:
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute(f"DROP INDEX {rec.sql.split()[3]}")


@pytest.mark.parametrize("sql", ["SELECT * FROM orders WHERE customer_id = 42",
                                 "SELECT * FROM orders WHERE id = $1",
                                 "SELECT id FROM orders WHERE created_at > '2024-01-02' ORDER BY created_at LIMIT 20"])
def test_recommends_nothing_for_a_query_an_index_serves(dry_run, sql):
    advice = advise(dry_run, [(sql, 1.0, None)])
    assert advice.recommendations == []


def test_read_only_mode_without_the_extension_says_what_is_missing(shop):
    db = Database(Settings.load(dsn=shop))
    try:
        advice = advise(db, [(SLOW, 1.0, None)])
    finally:
        db.close()
    assert advice.recommendations == []
    assert "CREATE EXTENSION hypopg" in advice.hypopg and "--mode dry-run" in advice.hypopg
    assert "CREATE INDEX ON public.orders (status, amount)" in advice.unverified


def test_the_remedy_is_worded_for_its_reader(shop):
    """Review r24b D8: at the CLI there is no server to restart; a model is told to restart agent19."""
    from agent19 import tool_names

    db = Database(Settings.load(dsn=shop))
    try:
        for_model = advise(db, [(SLOW, 1.0, None)]).hypopg
        with tool_names.cli_names({"advise_indexes": "advise"}):
            for_person = advise(db, [(SLOW, 1.0, None)]).hypopg
    finally:
        db.close()
    assert "restart agent19 with --mode dry-run" in for_model
    assert "run the command again with --mode dry-run" in for_person and "restart" not in for_person


@pytest.mark.parametrize("mode", ["read-only", "dry-run"])
def test_a_query_that_does_not_plan_is_an_error_not_advice(shop, mode):
    """Read-only mode without HypoPG measures nothing, but a misspelt column is still PostgreSQL's error."""
    db = Database(Settings.load(dsn=shop, mode=mode))
    try:
        with pytest.raises(InputError, match='column "amount_typo" does not exist'):
            advise(db, [("SELECT id FROM orders WHERE status = 'refunded' AND amount_typo > 900", 1.0, None)])
    finally:
        db.close()


def test_dry_run_as_a_login_that_may_not_create_hypopg_falls_back_and_says_why(shop):
    """A non-superuser in dry-run mode: CREATE EXTENSION hypopg is refused; the advice falls back (real
    indexes, which this login may not build either: nothing recommended) instead of failing as a bad query."""
    role = f"advise_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON orders TO {role}")
    db = Database(Settings.load(dsn=make_conninfo(shop, user=role), mode="dry-run"))
    try:
        advice = advise(db, [(SLOW, 1.0, None)])
    finally:
        db.close()
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
    assert "may not create the hypopg extension" in advice.hypopg, advice.hypopg
    assert "CREATE EXTENSION hypopg" in advice.hypopg  # what to ask a DBA for
    assert advice.verification == "none" and advice.recommendations == []  # no index could be built: none verified
    assert advice.candidates and all("must be owner" in c.verdict for c in advice.candidates), advice.candidates


def test_workload_under_a_budget(dry_run):
    queries = [(SLOW, 10.0, None), ("SELECT * FROM customers WHERE country = $1 AND created_at > $2", 1.0, None),
               ("SELECT * FROM orders WHERE customer_id = 42", 5.0, None)]
    advice = advise(dry_run, queries, min_gain=0.01)
    assert advice.recommendations and len(advice.queries) == 3
    total_before = sum(q.cost_before * q.weight for q in advice.queries)
    total_after = sum(q.cost_after * q.weight for q in advice.queries)
    assert total_after < total_before / 2
    small = advise(dry_run, queries, budget_bytes=1, min_gain=0.01)
    assert small.recommendations == []
    assert any(c.verdict == "over the storage budget" for c in small.candidates)


def test_candidates_put_equality_first_and_skip_served_ones():
    tables = {"t": TableInfo("public", "t", {"a": "int", "b": "int", "c": "text", "d": "int"},
                             indexes=[("t_d_idx", "btree", ["d"], False)])}
    tables["public.t"] = tables["t"]
    shape = query_shape("SELECT c FROM t WHERE b > 5 AND a = 1 AND d = 2 AND c LIKE '%x' ORDER BY b", tables)
    found, served = candidates(shape, tables)
    assert Candidate("public.t", ("a", "d", "b")) in [Candidate(c.table, c.columns) for c in found]
    assert any(c.method == "gin" and c.columns == ("c",) for c in found)
    only_d = query_shape("SELECT * FROM t WHERE d = 3", tables)
    found, served = candidates(only_d, tables)
    assert [c for c in found if not c.include] == []  # only a covering variant remains, for HypoPG to judge
    assert served == {"CREATE INDEX ON public.t (d)": "t_d_idx"}


def test_partial_index_only_for_a_rare_constant(dry_run):
    advice = advise(dry_run, [(SLOW, 1.0, None)])
    full = next(c for c in advice.candidates if c.definition == "CREATE INDEX ON public.orders (status, amount)")
    partial = next(c for c in advice.candidates if "WHERE" in c.definition)
    assert partial.definition == "CREATE INDEX ON public.orders (amount) WHERE status = 'refunded'"
    assert partial.verdict == "recommended" and partial.cost is not None and full.cost is not None
    assert partial.cost <= full.cost * 1.05  # HypoPG plans the query with it: about as cheap as the full index
    size = advice.recommendations[0].estimated_size_bytes
    assert size is not None and size < 1_000_000  # 300 rows' worth, not 300 000

    # 'paid' is a third of the rows: a partial index would be a third of the table, no candidate
    common = advise(dry_run, [("SELECT id FROM orders WHERE status = 'paid' AND amount > 999", 1.0, None)])
    assert not [c for c in common.candidates if "WHERE" in c.definition]
    assert all(r.where is None for r in common.recommendations)


def test_partial_candidate_needs_a_low_cardinality_column_and_a_rare_value():
    info = TableInfo("public", "jobs", {"id": "bigint", "status": "text", "email": "text", "created_at": "timestamptz"},
                     rows=100_000, stats={"status": (3, {"done": 0.97, "failed": 0.025, "pending": 0.005}),
                                          "email": (-1, {})})
    tables = {"jobs": info, "public.jobs": info}

    def partials(sql: str) -> list[str]:
        found, _ = candidates(query_shape(sql, tables), tables)
        return [c.definition() for c in found if c.where]

    assert partials("SELECT id FROM jobs WHERE status = 'pending' ORDER BY created_at LIMIT 10") == [
        "CREATE INDEX ON public.jobs (created_at) WHERE status = 'pending'"]
    assert partials("SELECT id FROM jobs WHERE 'failed' = status AND created_at > now() - interval '1 day'") == [
        "CREATE INDEX ON public.jobs (created_at) WHERE status = 'failed'"]
    assert partials("SELECT id FROM jobs WHERE status = 'done'") == []  # 97 % of the rows
    assert partials("SELECT id FROM jobs WHERE email = 'a@b.c'") == []  # unique column: the full index serves
