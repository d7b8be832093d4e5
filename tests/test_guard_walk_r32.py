"""What the rewriter adds to a planned write, as review r32 found it (the guard's walk of write targets).

F1: a rule on the written table that inserts into another table makes the planner build that insert too, with the
other table's column defaults, folded as the login that plans: the owner's IMMUTABLE default ran as a superuser
planning `INSERT INTO wishes`. The relations a target's rules name are targets too now.
F2: a default the planner never evaluates (a STABLE helper: a target list is never estimated) refused every planned
write on the table, a DELETE too; F6: a rule's VOLATILE call, likewise (the planner never calls it)."""

from __future__ import annotations

import psycopg

from tests.conftest import owner_login
from tests.test_cli import agent19
from tests.test_guard_relation_code import PAYLOAD

RULED = """
CREATE FUNCTION public.lie() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN""" + PAYLOAD + """  RETURN 0;
END $$;
CREATE TABLE public.sink (a text, b int DEFAULT public.lie());
CREATE TABLE public.wishes (a text);
CREATE RULE wishes_log AS ON INSERT TO public.wishes DO ALSO INSERT INTO public.sink (a) VALUES (NEW.a);
"""
ORDINARY = """
CREATE FUNCTION public.current_user_id() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT pg_catalog.current_setting('app.user_id', true) $$;
CREATE TABLE public.projects (id serial PRIMARY KEY, name text, created_by text DEFAULT public.current_user_id());
CREATE TABLE public.audit (what text);
CREATE FUNCTION public.log_change(t text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO public.audit (what) VALUES (t); RETURN 1; END $$;
CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
CREATE RULE notes_audit AS ON INSERT TO public.notes DO ALSO SELECT public.log_change(NEW.body);
"""


def _explain(dsn: str, sql: str) -> tuple[int, str]:
    out = agent19("--mode", "dry-run", "explain", "--dsn", dsn, "--no-analyze", sql)
    return out.returncode, out.stdout + out.stderr


def test_a_rules_target_defaults_are_walked(dsn: str) -> None:
    owner = owner_login(dsn, "ruled")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(RULED)
    with psycopg.connect(owner, application_name="victim", autocommit=True) as victim:
        code, text = _explain(dsn, "INSERT INTO public.wishes VALUES ('x')")
        assert victim.execute("SELECT 1").fetchone() == (1,)  # not terminated
    assert "owner code ran" not in text, text
    assert code != 0 and "default of public.sink.b" in text, text


def test_defaults_and_rules_the_planner_never_calls_are_not_refused(dsn: str) -> None:
    owner = owner_login(dsn, "ordinary")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(ORDINARY)
    for sql in ("DELETE FROM public.projects WHERE id = 1", "UPDATE public.projects SET name = 'x' WHERE id = 1",
                "INSERT INTO public.projects (name) VALUES ('x')", "INSERT INTO public.notes (body) VALUES ('x')"):
        code, text = _explain(dsn, sql)
        assert "refused" not in text and code in (0, 1), (sql, text)
