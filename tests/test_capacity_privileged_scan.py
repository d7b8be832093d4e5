"""capacity counts creation columns as the login user reads run as, never as a privileged one (review r29 F4).

Counting rows per month plans and scans the tables: the planner folds a table's index expressions, and a function
its owner declared IMMUTABLE runs then — as the login that plans. As a superuser it ran the owner's code with a
superuser's powers. Now the scan runs as the least-privilege reader (``--read-dsn``), or not at all when the only
login is privileged and the user did not accept it (``--allow-privileged-reads``): a note says why, and the plan
falls back to the other evidence. The owner's function raises when it runs as a superuser: never seen."""

from __future__ import annotations

from pathlib import Path

import psycopg

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.ops.capacity.plan import capacity_plan
from tests.conftest import owner_login
from tests.reader_login import reader_login
from tests.test_guard_relation_code import PAYLOAD

LIE = """
CREATE FUNCTION public.lie() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
    RAISE EXCEPTION 'owner code ran as superuser %', current_user;
  END IF;
  RETURN 0;
END $$;
CREATE TABLE public.events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), kind text);
INSERT INTO public.events (created_at) SELECT now() - g * interval '1 day' FROM generate_series(1, 400) g;
CREATE INDEX events_lie ON public.events ((public.lie() + id));
ANALYZE public.events;
"""


def _planted(dsn: str) -> str:
    owner = owner_login(dsn, "capscan")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(LIE)
    return owner


def _plan(dsn: str, **settings: object) -> tuple[str, str]:
    db = Database(Settings.load(dsn=dsn, env={}, **settings))  # type: ignore[arg-type]
    try:
        growth = capacity_plan(db, window_s=0).growth
    finally:
        db.close()
    return growth.source, " ".join(growth.notes)


def test_a_superuser_login_does_not_scan_an_owners_tables(dsn: str) -> None:
    _planted(dsn)
    source, notes = _plan(dsn)
    assert "owner code ran" not in source + notes
    assert "creation timestamp columns not counted" in notes and "--read-dsn" in notes, notes
    assert source != "creation timestamp columns"


def test_the_reader_counts_them(dsn: str, tmp_path: Path) -> None:
    _planted(dsn)
    with reader_login(dsn, tmp_path) as reader:
        source, notes = _plan(dsn, read_dsn=reader)
    assert "owner code ran" not in source + notes and "not counted" not in notes, notes
    assert source == "creation timestamp columns", (source, notes)


DENIED = """
CREATE FUNCTION public.sly() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN""" + PAYLOAD + """  RETURN 0;
END $$;
CREATE TABLE public.visits (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.visits (created_at) SELECT now() - g * interval '1 day' FROM generate_series(1, 400) g;
CREATE INDEX visits_sly ON public.visits ((public.sly() + id));
CREATE TABLE public.orders (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.orders (created_at) SELECT now() - g * interval '1 day' FROM generate_series(1, 400) g;
ANALYZE public.visits, public.orders;
"""


def test_an_accepted_privileged_scan_skips_what_the_read_guard_refuses(dsn: str) -> None:
    """With --allow-privileged-reads the superuser counts rows, but never of a table whose planned code the read guard
    refuses (review r31 F12: the same table was refused through run_sql and scanned by capacity)."""
    owner = owner_login(dsn, "capguard")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(DENIED)
    with psycopg.connect(owner, application_name="victim", autocommit=True) as victim:
        source, notes = _plan(dsn, allow_privileged_reads=True)
        assert victim.execute("SELECT 1").fetchone() == (1,)  # not terminated
    assert "owner code ran" not in source + notes, notes
    assert "public.visits: rows not counted" in notes and "visits_sly" in notes, notes
    assert source == "creation timestamp columns", (source, notes)  # orders still counted
