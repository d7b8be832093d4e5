"""A PL/pgSQL variable of a domain type runs the domain's CHECK on assignment (review r31 F8).

The read guard reads a PL/pgSQL body as words that may be functions, relations or cast targets; a word naming a
domain (`DECLARE v public.dsafe`), or a column or row type through `%TYPE`/`%ROWTYPE` (the domain's name is not in
the body at all), was never followed to the domain's CHECKs, which run when the variable is assigned. The owner's
CHECK function ran as a superuser login reading `SELECT public.clean('x')`. Now the CHECKs of every type a body
names, and of the row types of relations it names, are judged like the rest of the body's code."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import owner_login
from tests.test_cli import agent19
from tests.test_guard_relation_code import PAYLOAD

OWNER_SQL = """
CREATE FUNCTION public.evil_check(t text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN""" + PAYLOAD + """  RETURN true;
END $$;
CREATE DOMAIN public.dsafe AS text CHECK (public.evil_check(VALUE));
CREATE FUNCTION public.clean(t text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE v public.dsafe;
BEGIN v := t; RETURN v; END $$;
CREATE TABLE public.customers (id int, code public.dsafe);
CREATE FUNCTION public.normalize_code(t text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE v public.customers.code%TYPE;
BEGIN v := upper(t); RETURN v; END $$;
CREATE FUNCTION public.harmless(t text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE v text;
BEGIN v := upper(t); RETURN v; END $$;
"""


@pytest.mark.parametrize("call", ["public.clean('x')", "public.normalize_code('x')"])
def test_a_domain_variables_check_is_followed(dsn: str, call: str) -> None:
    owner = owner_login(dsn, "domains")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(OWNER_SQL)
    with psycopg.connect(owner, application_name="victim", autocommit=True) as victim:
        out = agent19("sql", "--dsn", dsn, f"SELECT {call}")
        assert victim.execute("SELECT 1").fetchone() == (1,)  # not terminated
    text = out.stdout + out.stderr
    assert "owner code ran" not in text, text
    assert out.returncode != 0 and "pg_terminate_backend" in text, text
    harmless = agent19("sql", "--dsn", dsn, "SELECT public.harmless('x')")
    assert harmless.returncode == 0 and "X" in harmless.stdout, harmless.stdout + harmless.stderr
