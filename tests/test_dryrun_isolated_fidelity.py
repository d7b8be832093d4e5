"""Hostile review r27b: where an isolated copy (agent19.migrate.dryrun.isolated) was more permissive — or stricter —
than the target, so that a statement the target refuses PASSED there (or one it accepts FAILED). Each case is run on
the target first (as the login, in a rolled-back transaction) to show what the target says; the isolated run must
agree, or say it could not test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.migrate.dryrun.isolated import isolated_copy, isolated_dry_run, label
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tests.conftest import need, session_settings
from tests.scratch_dryruns import owner


def _isolated(login: str, sql: str, work: Path) -> Any:
    db = Database(session_settings(dsn=login, mode="dry-run"))
    try:
        return isolated_dry_run(db, parse_sql(sql), work_base=work)
    finally:
        db.close()


def _on_target(login: str, sql: str) -> str | None:
    """What the target says of ``sql`` run as ``login``: None (accepted) or its error; rolled back."""
    with psycopg.connect(login) as c:
        try:
            c.execute(sql)
            return None
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0]
        finally:
            c.rollback()


def _user(login: str) -> str:
    return conninfo_to_dict(login)["user"]


@pytest.fixture
def app(dsn: str) -> str:
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    return owner(dsn, "CREATE TABLE mine (id int);")


def test_a_table_with_an_all_quoted_identity_keeps_its_owner_in_the_copy(app, dsn, work):
    """k09: ``"Billing"."Invoices"``, owned by another role: the owner statement was rejected as an "unexpected
    identity" (no unquoted text in it), the table stayed the login's in the copy, and an ALTER TABLE the target
    refuses PASSED."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute('CREATE SCHEMA "Billing"')
        c.execute(f'GRANT USAGE ON SCHEMA "Billing" TO {_user(app)}')
        c.execute('CREATE TABLE "Billing"."Invoices" (id int PRIMARY KEY, amount numeric)')
        c.execute(f'GRANT SELECT ON "Billing"."Invoices" TO {_user(app)}')
    alter = 'ALTER TABLE "Billing"."Invoices" ADD COLUMN paid boolean;\n'
    assert _on_target(app, alter) == "must be owner of table Invoices"
    r = _isolated(app, alter, work)
    assert not r.summary.startswith("PASSED"), r.summary
    assert "must be owner of table Invoices" in (r.statements[0].untested or ""), r.statements[0]
    assert not r.isolated.restore_errors, r.isolated.restore_errors

    create = 'CREATE TABLE "Billing".notes (id int);\n'  # the schema is not the login's either
    assert _on_target(app, create) == "permission denied for schema Billing"
    r = _isolated(app, create, work)
    assert "permission denied for schema Billing" in (r.statements[0].untested or ""), r.statements[0]


def test_an_owner_or_privilege_the_copy_could_not_make_makes_nothing_pass_there(app, work):
    """k09: whatever owner or privilege statement the copy refused (an object it has), the copy may allow what the
    target refuses: a statement that ran without error there is not testable, never PASSED."""
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with isolated_copy(db, work_base=work) as copy:
            result = dry_run(copy.db, parse_sql("ALTER TABLE mine ADD COLUMN c int;\nSELECT 1/0;\n"))
            passing = dry_run(copy.db, parse_sql("ALTER TABLE mine ADD COLUMN d int;\n"))
            assert passing.summary.startswith("PASSED"), passing.summary
            assert copy.info.access_unmade == [], copy.info.access_unmade
            copy.info.access_unmade = ["owner ('TABLE', 'public.mine', 'someone'): refused"]
        r = label(result, copy, db)
        p = label(passing, copy, db)
    finally:
        db.close()
    assert p.summary.startswith("COULD NOT TEST"), p.summary
    assert p.passed and not p.complete and "could not be made there" in (p.statements[0].untested or "")
    assert r.summary.startswith("FAILED"), r.summary  # the failing statement keeps its verdict
    assert r.statements[1].error is not None and not r.statements[1].untested
    assert r.statements[0].untested and "public.mine" in r.statements[0].untested, r.statements[0]
    assert not r.complete
    assert "could not test 1 statement(s) (1)" in r.summary, r.summary


LEDGER = """
CREATE TABLE public.ledger (id int PRIMARY KEY, amount numeric NOT NULL CHECK (amount >= 0),
                            kind text DEFAULT 'std' NOT NULL);
CREATE TABLE public.events (id bigserial PRIMARY KEY, payload text);
CREATE TABLE public.stamped (id int GENERATED ALWAYS AS IDENTITY, at date NOT NULL DEFAULT current_date);
CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
CREATE TABLE public.guarded (id int);
CREATE TRIGGER guarded_refuse BEFORE INSERT ON public.guarded FOR EACH ROW EXECUTE FUNCTION public.refuse();
"""


def test_a_stand_in_has_the_targets_defaults_and_constraints(app, dsn, work):
    """k03/k04: a table the login may not SELECT (a column grant and INSERT: the usual application grant) is left out
    of the dump and stood in for. Its stand-in had no CHECK nor DEFAULT: an INSERT the target refuses PASSED, one it
    accepts FAILED ("null value in column id"). It now has the target's defaults, identity and constraints; a
    trigger it cannot have makes a statement touching it not testable."""
    login = _user(app)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(LEDGER)
        for table in ("ledger", "events", "stamped", "guarded"):
            c.execute(f"GRANT SELECT (id), INSERT ON public.{table} TO {login}")
        c.execute(f"GRANT USAGE ON SEQUENCE public.events_id_seq TO {login}")
    cases = [
        ("INSERT INTO public.ledger (id, amount, kind) VALUES (1, -5, 'std');\n", "violates check constraint"),
        ("INSERT INTO public.ledger (id, amount) VALUES (1, 5);\n", None),  # kind's default
        ("INSERT INTO public.ledger (id, amount) VALUES (1, 5), (1, 6);\n", "duplicate key value"),
        ("INSERT INTO public.events (payload) VALUES ('seed');\n", None),  # bigserial
        ("INSERT INTO public.stamped DEFAULT VALUES;\n", None),  # identity, current_date
    ]
    for sql, refused in cases:
        said = _on_target(app, sql)
        assert (said is None) if refused is None else (refused in (said or "")), (sql, said)
        r = _isolated(app, sql, work)
        [s] = r.statements
        if refused is None:
            assert r.summary.startswith("PASSED"), (sql, r.summary)
        else:
            assert not r.passed and s.error is not None and refused in s.error.message, (sql, r.summary)
        assert not r.isolated.restore_errors[:-1], r.isolated.restore_errors  # only the note of the tables left out
    trigger = "INSERT INTO public.guarded VALUES (1);\n"
    assert _on_target(app, trigger) == "no"
    r = _isolated(app, trigger, work)
    [s] = r.statements
    assert r.summary.startswith("COULD NOT TEST"), r.summary
    assert "table public.guarded is a stand-in there" in (s.untested or "") and "triggers" in s.untested, s


MEASURE = """
CREATE TABLE public.measure (id int, at date NOT NULL CHECK (at > '2000-01-01')) PARTITION BY RANGE (at);
CREATE TABLE public.measure_2026 PARTITION OF public.measure FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.measure_other PARTITION OF public.measure DEFAULT;
CREATE TABLE public.base (id int);
CREATE TABLE public.derived (note text) INHERITS (public.base);
"""


def test_a_partition_left_out_is_attached_to_its_readable_parent(app, dsn, work):
    """k10: a partition without a grant of its own (the usual setup: PostgreSQL checks the partitioned table's) is
    left out of the dump; its stand-in was a plain table, and an INSERT through the readable parent FAILED ("no
    partition of relation measure found for row"). It is now attached with its bound; an inheritance child inherits."""
    login = _user(app)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(MEASURE)
        c.execute(f"GRANT SELECT, INSERT, UPDATE ON public.measure, public.base TO {login}")
    for sql, where in (("INSERT INTO public.measure VALUES (1, '2026-06-01');\n", "measure_2026"),
                       ("INSERT INTO public.measure VALUES (1, '2030-06-01');\n", "measure_other")):
        assert _on_target(app, sql) is None
        r = _isolated(app, sql, work)
        assert r.summary.startswith("PASSED"), r.summary
        assert any(lock.relation == f"public.{where}" for lock in r.statements[0].locks), r.statements[0].locks
    refused = "INSERT INTO public.measure VALUES (1, '1999-06-01');\n"
    assert "violates check constraint" in (_on_target(app, refused) or "")
    r = _isolated(app, refused, work)
    assert r.statements[0].error and "violates check constraint" in r.statements[0].error.message, r.summary
    through = "UPDATE public.base SET id = 2;\n"  # reaches the child too: only the parent's privileges are checked
    assert _on_target(app, through) is None
    r = _isolated(app, through, work)
    assert r.summary.startswith("PASSED"), r.summary
    assert any(lock.relation == "public.derived" for lock in r.statements[0].locks), r.statements[0].locks


DEFINERS = """
CREATE TABLE public.secret (id int, note text);
CREATE FUNCTION public.audit(msg text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN INSERT INTO public.secret VALUES (1, msg); END $f$;
GRANT EXECUTE ON FUNCTION public.audit(text) TO {login};
CREATE FUNCTION public.admin_only() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN IF session_user <> current_user THEN
  RAISE EXCEPTION 'only admins may call this' USING ERRCODE = 'insufficient_privilege'; END IF; END $f$;
CREATE ROLE {reader} NOLOGIN;
GRANT pg_read_all_data TO {reader};
CREATE FUNCTION public.count_secret() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  AS $$ SELECT count(*) FROM public.secret $$;
ALTER FUNCTION public.count_secret() OWNER TO {reader};
GRANT EXECUTE ON FUNCTION public.count_secret() TO {login};
"""


@pytest.mark.parametrize("case", ["k05", "k17"])
def test_a_permission_error_is_blamed_on_the_definer_it_happened_in(app, dsn, work, case):
    """k05: a permission error in a plain overload ``audit(integer)`` was blamed on the superuser's SECURITY DEFINER
    ``audit(text)`` (matched by name only), and a definer's own RAISE … insufficient_privilege on the copy; both fail
    on the target too: the login lacks a privilege. k17: a definer owned by a member of pg_read_all_data works on the
    target and is refused in the copy (no predefined-role membership there): not testable, not the login's lack."""
    import secrets

    login, reader = _user(app), f"reader_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(DEFINERS.format(login=login, reader=reader))
    try:
        with psycopg.connect(app, autocommit=True) as c:
            c.execute("CREATE FUNCTION public.audit(n integer) RETURNS void LANGUAGE plpgsql AS $f$ "
                      "BEGIN INSERT INTO public.secret VALUES (n, 'x'); END $f$")
        for sql, target in (("SELECT public.audit(1);\n", "permission denied for table secret"),
                            ("SELECT public.admin_only();\n", "only admins may call this"))[:2 if case == "k05" else 0]:
            assert _on_target(app, sql) == target
            r = _isolated(app, sql, work)
            [s] = r.statements
            assert s.untested and s.untested.startswith("this login lacks a privilege"), (sql, s.untested)
            assert target in s.untested, s.untested
        if case == "k05":
            return
        member = "SELECT public.count_secret();\n"
        assert _on_target(app, member) is None
        r = _isolated(app, member, work)
        [s] = r.statements
        assert (s.untested or "").startswith("not testable in the isolated copy: function public.count_secret() runs "
                                             f"there without its owner's member of pg_read_all_data (owned by {reader}"
                                             ), s.untested
        assert any(f"public.count_secret() (owned by {reader}, member of pg_read_all_data)" in n
                   for n in r.isolated.restore_errors), r.isolated.restore_errors
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:  # roles are the server's
            c.execute(f"DROP FUNCTION public.count_secret(); DROP ROLE {reader}")
