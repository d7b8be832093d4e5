"""Without HypoPG (the embedded PostgreSQL 16 has no contrib extensions), dry-run mode verifies each
candidate by building the real index in a transaction that is rolled back — and leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from agent19.config import Settings
from agent19.db import Database
from agent19.optimize.advisor import advise
from tests.conftest import _fresh_database, _server

SLOW = "SELECT id, amount FROM jobs WHERE kind = 7 AND amount > 990"


@pytest.fixture(scope="module")
def no_hypopg() -> Iterator[str]:
    server = _server("pgserver")
    gen = _fresh_database(server)
    dsn = next(gen)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'hypopg'").fetchone() == (0,)
        conn.execute("""CREATE TABLE jobs AS
                        SELECT g AS id, g % 50 AS kind, (g * 37) % 1000 AS amount, md5(g::text) AS note
                          FROM generate_series(1, 200000) g;
                        ALTER TABLE jobs ADD PRIMARY KEY (id);
                        ANALYZE jobs""")
    yield dsn
    gen.close()


def _indexes(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'").fetchall()]


def _advise(dsn: str, mode: str, **kw: int) -> object:
    db = Database(Settings.load(dsn=dsn, mode=mode))
    try:
        return advise(db, [(SLOW, 1.0, None)], **kw)  # type: ignore[arg-type]
    finally:
        db.close()


def test_dry_run_verifies_with_a_real_index_and_rolls_it_back(no_hypopg):
    advice = _advise(no_hypopg, "dry-run")
    assert advice.verification == "real-index", advice  # type: ignore[attr-defined]
    assert "rolled back" in advice.hypopg  # type: ignore[attr-defined]
    assert len(advice.recommendations) == 1, advice  # type: ignore[attr-defined]
    rec = advice.recommendations[0]  # type: ignore[attr-defined]
    assert rec.verified_by == "real-index"
    # kind = 7 is 2 % of a 50-value column: the partial index, built for real too, is the smaller equal
    assert (rec.columns, rec.where) == (["amount"], "kind = 7"), rec
    assert rec.improvement > 0.9 and rec.estimated_size_bytes and rec.estimated_size_bytes > 8192
    assert _indexes(no_hypopg) == ["jobs_pkey"]  # every index built to verify was rolled back


def test_read_only_mode_verifies_nothing(no_hypopg):
    advice = _advise(no_hypopg, "read-only")
    assert advice.verification == "none" and advice.recommendations == []  # type: ignore[attr-defined]
    assert "CREATE INDEX ON public.jobs (kind, amount)" in advice.unverified  # type: ignore[attr-defined]


def test_size_guard_skips_tables_over_the_limit(no_hypopg):
    from agent19.tools.advise import render_advice

    advice = _advise(no_hypopg, "dry-run", real_index_max_bytes=1 << 20)
    assert advice.recommendations == [], advice  # type: ignore[attr-defined]
    # no index was built: the advice does not say it verified with real indexes, then that they are not verified
    text = render_advice(advice)  # type: ignore[arg-type]
    assert "verified with: none" in text and "verified instead" not in text, text
    assert "unverified idea: CREATE INDEX ON public.jobs (kind, amount)" in text, text
    assert any("public.jobs is" in n and "over the 1.0 MB limit" in n for n in advice.notes)  # type: ignore[attr-defined]
    assert "CREATE INDEX ON public.jobs (kind, amount)" in advice.unverified  # type: ignore[attr-defined]


def test_a_build_over_the_timeout_is_reported_not_recommended(no_hypopg):
    advice = _advise(no_hypopg, "dry-run", build_timeout_ms=1)
    assert advice.recommendations == [], advice  # type: ignore[attr-defined]
    verdicts = [c.verdict for c in advice.candidates]  # type: ignore[attr-defined]
    assert verdicts and all("statement timeout" in v for v in verdicts), verdicts
    assert advice.verification == "none", advice  # type: ignore[attr-defined]
    assert _indexes(no_hypopg) == ["jobs_pkey"]
