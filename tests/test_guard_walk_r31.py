"""The read guard's relation walk, after hostile review r31 (F11, F3, F2, F6, F9, F1).

Each attack plants the owner's code where planning a statement runs it as the login that plans (here agent19's
superuser, in dry-run mode): the target table of a write (its indexes, column defaults, domain defaults, generated
columns, rules), an operator's negator or commutator reached through a view, a range type's subtype_diff. The owner's
function, when run as a superuser, terminates a victim session and raises: each must be refused and the victim live.
The other way round, a VOLATILE validator in a plain table's CHECK is never run by the planner: reads of that table are
not refused; and a deep inheritance chain is walked without exhausting Python's stack.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.optimize.explain import explain
from agent19.safety.readonly import ReadOnlyViolation
from tests import test_guard_relation_code as planted

owner = planted.owner  # the fixtures: the owner's login with public.lie() and public.t, and the victim session
victim = planted.victim
_alive = planted._alive

EVIL = """
CREATE FUNCTION public.evil(a int, b int) RETURNS {ret} {vol} LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
    PERFORM pg_catalog.pg_terminate_backend(x.pid) FROM pg_catalog.pg_stat_activity x
      WHERE x.application_name OPERATOR(pg_catalog.=) 'victim';
    RAISE EXCEPTION 'owner code ran as superuser %', current_user;
  END IF;
  RETURN {value};
END $$;
"""


def _as_owner(owner: str, sql: str) -> None:
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(sql)


def _refused(dsn: str, victim: psycopg.Connection, cases: list[tuple[str, str]]) -> None:
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        for sql, named in cases:
            with pytest.raises(ReadOnlyViolation) as refused:
                explain(db, sql, analyze=False)
            assert named in refused.value.message, (sql, refused.value.message)
            assert _alive(victim), sql
    finally:
        db.close()


def test_a_writes_target_table_is_walked(dsn, owner, victim):
    """F11: the target of INSERT/UPDATE/DELETE (pglast: a RangeVar without its tag) had no walk at all."""
    _as_owner(owner, "CREATE INDEX t_planted ON public.t ((public.lie() + id))")
    _refused(dsn, victim, [(sql, "index public.t_planted") for sql in (
        "DELETE FROM t WHERE id = 1", "UPDATE t SET n = 2 WHERE id = 1", "INSERT INTO t VALUES (3000, 1, 'x')",
        "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING id) SELECT * FROM d")])


def test_what_the_rewriter_adds_to_a_write_is_walked(dsn, owner, victim):
    """F3: column defaults, generated columns, a domain's default and a plain table's rules are folded by the planner
    (an IMMUTABLE call with constant arguments runs while an INSERT is explained)."""
    _as_owner(owner, """
        CREATE TABLE public.o1 (id int, note int DEFAULT public.lie());
        CREATE DOMAIN public.dnote AS int DEFAULT public.lie();
        CREATE TABLE public.o2 (id int, note public.dnote);
        CREATE TABLE public.o3 (id int, g int GENERATED ALWAYS AS (public.lie()) STORED);
        CREATE TABLE public.o4 (id int);
        CREATE RULE log_ins AS ON INSERT TO public.o4 DO ALSO SELECT public.lie();
        CREATE VIEW public.o1v AS SELECT * FROM public.o1;
        CREATE TABLE public.o5 (id int, note int);
        CREATE VIEW public.o5v AS SELECT * FROM public.o5;
        ALTER VIEW public.o5v ALTER COLUMN note SET DEFAULT public.lie();
    """)
    _refused(dsn, victim, [("INSERT INTO o1(id) VALUES (1)", "default of public.o1.note"),
                           ("UPDATE o1 SET note = DEFAULT WHERE id = 1", "default of public.o1.note"),
                           ("INSERT INTO o2(id) VALUES (1)", "default of domain public.dnote"),
                           ("INSERT INTO o3(id) VALUES (1)", "default of public.o3.g"),
                           ("INSERT INTO o4(id) VALUES (1)", "rule log_ins of public.o4"),
                           ("INSERT INTO o1v(id) VALUES (1)", "default of public.o1.note"),
                           ("INSERT INTO o5v(id) VALUES (1)", "default of public.o5v.note")])


def test_an_operators_negator_and_commutator_are_followed(dsn, owner, victim):
    """F2: the planner negates NOT (x === 0) to x !== 0 and commutes 5000 <<< x to x >>> 5000, then calls the
    operator's function on the column's statistics; through a view the reader writes neither."""
    _as_owner(owner, EVIL.format(ret="boolean", vol="VOLATILE", value="a <> b") + """
        CREATE FUNCTION public.eq_ok(a int, b int) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
            AS 'begin return a = b; end';
        CREATE OPERATOR public.!== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.evil, RESTRICT = scalarltsel);
        CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.eq_ok, RESTRICT = eqsel,
                                    NEGATOR = !==);
        CREATE OPERATOR public.>>> (LEFTARG = int, RIGHTARG = int, FUNCTION = public.evil, RESTRICT = scalargtsel);
        CREATE OPERATOR public.<<< (LEFTARG = int, RIGHTARG = int, FUNCTION = public.eq_ok, RESTRICT = scalarltsel,
                                    COMMUTATOR = >>>);
        CREATE TABLE public.nums (x int);
        INSERT INTO public.nums SELECT pg_catalog.generate_series(1, 10000);
        ANALYZE public.nums;
        CREATE VIEW public.active_nums AS SELECT * FROM public.nums WHERE NOT (x === 0);
        CREATE VIEW public.big_nums AS SELECT * FROM public.nums WHERE 5000 <<< x;
    """)
    _refused(dsn, victim, [("SELECT count(*) FROM active_nums", "public.evil()"),
                           ("SELECT count(*) FROM big_nums", "public.evil()"),
                           ("SELECT count(*) FROM nums WHERE NOT (x === 0)", "public.evil()")])


def test_a_volatile_check_is_not_run_by_the_planner_and_not_refused(dsn, owner, victim):
    """F6: CREATE FUNCTION's default volatility is VOLATILE; the planner folds only immutable calls, so a VOLATILE
    validator in a CHECK never runs when a read is planned or run (checked here on the server, constraint exclusion
    on), and reading the table is not refused. A lying IMMUTABLE one in an inheritance child's CHECK still is
    (tests/test_guard_relation_code.py)."""
    _as_owner(owner, """
        CREATE FUNCTION public.valid_sku(s text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'valid_sku ran'; END $$;
        CREATE TABLE public.products (id int PRIMARY KEY, sku text CHECK (public.valid_sku(sku)));
        CREATE TABLE public.products_old () INHERITS (public.products);
        ALTER TABLE public.products_old ADD CONSTRAINT old_sku CHECK (public.valid_sku(sku));
    """)
    with psycopg.connect(owner, autocommit=True) as c:  # the server: never called by a read, nor by its plan
        for exclusion in ("partition", "on"):
            c.execute(f"SET constraint_exclusion = {exclusion}")
            c.execute("SELECT * FROM public.products WHERE sku = 'ABC-1'").fetchall()
            c.execute("EXPLAIN SELECT * FROM public.products WHERE sku = 'ABC-1'").fetchall()
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        for analyze in (False, True):
            assert explain(db, "SELECT * FROM products WHERE sku = 'ABC-1'", analyze=analyze).execution in (
                "plain", "analyze")
    finally:
        db.close()
    assert _alive(victim)


def test_a_deep_inheritance_chain_is_walked(dsn, owner, victim):
    """F9: 400 levels of inheritance exhausted Python's stack (reported as 'cannot reach PostgreSQL')."""
    _as_owner(owner, "CREATE TABLE public.chain0 (id int);"
                     "DO $$ BEGIN FOR i IN 1..400 LOOP EXECUTE pg_catalog.format("
                     "'CREATE TABLE public.chain%s () INHERITS (public.chain%s)', i, i - 1); END LOOP; END $$;")
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        assert explain(db, "SELECT count(*) FROM chain0", analyze=False).execution == "plain"
    finally:
        db.close()
    _as_owner(owner, "ALTER TABLE public.chain400 ADD CONSTRAINT planted CHECK (id > public.lie())")
    _refused(dsn, victim, [("SELECT count(*) FROM chain0", "CHECK constraint planted of public.chain400")])


def test_a_range_types_subtype_diff_is_followed(dsn, owner, victim):
    """F1: rangesel calls the column's range type's subtype_diff on its histogram when `during && '[5,20)'` is
    planned; the operator and the constant are built-in, only the type is the owner's."""
    _as_owner(owner, EVIL.format(ret="float8", vol="IMMUTABLE", value="(a - b)::float8") + """
        CREATE TYPE public.myrange AS RANGE (subtype = int, subtype_diff = public.evil);
        CREATE TABLE public.bookings (id int, during public.myrange);
        INSERT INTO public.bookings SELECT g, public.myrange(g, g + 10) FROM pg_catalog.generate_series(1, 2000) g;
        ANALYZE public.bookings;
    """)
    _refused(dsn, victim, [("SELECT count(*) FROM bookings WHERE during && '[5,20)'", "range type public.myrange")])


def test_a_volatile_check_still_stops_the_calibrations_copy(dsn, owner, victim):
    """The calibration copies a sample with the table's CHECKs and writes it: every call in them runs per row, the
    volatile ones too, so the planner's leniency (F6) does not apply there."""
    _as_owner(owner, EVIL.format(ret="boolean", vol="VOLATILE", value="true") + """
        ALTER TABLE public.t ADD CONSTRAINT t_valid CHECK (public.evil(n, n));
        ANALYZE public.t;
    """)
    done = planted._cli("plan", "--sql", "ALTER TABLE public.t ALTER COLUMN n TYPE bigint", "--dsn", dsn,
                        "--mode", "dry-run", "--format", "json", "--write-sample-seconds", "0")
    assert done.returncode == 0, done.stderr
    ops = [o for o in json.loads(done.stdout)["operations"] if o.get("work")]
    assert ops, done.stdout
    for op in ops:
        assert "not sampled" in op["duration_basis"] and "t_valid" in op["duration_basis"], op
    assert "owner code ran" not in done.stdout + done.stderr
    assert _alive(victim)
