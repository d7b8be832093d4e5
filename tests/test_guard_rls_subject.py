"""A table's policies are walked only for a login they apply to (review r32 F3).

A superuser, a BYPASSRLS role and the table's owner (unless FORCE ROW LEVEL SECURITY) never run a table's policies
(PostgreSQL's check_enable_rls), yet the read guard walked them for every login: a SECURITY DEFINER helper in a
policy (common in Supabase-style schemas) refused every read of the table, a superuser's too. Now the policies are
followed only where they apply; the reader login, to which they apply, is still refused the helper."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.conftest import owner_login
from tests.reader_login import reader_login
from tests.test_cli import agent19

SCHEMA = """
CREATE TABLE public.tasks (id int PRIMARY KEY, org_id int, title text);
INSERT INTO public.tasks VALUES (1, 1, 'a'), (2, 2, 'b');
CREATE FUNCTION public.is_member(o int) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = public AS $$ SELECT o = 1 $$;
ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tasks_member ON public.tasks USING (public.is_member(org_id));
"""
QUERY = "SELECT id, title FROM public.tasks ORDER BY id"


def test_policies_are_walked_only_for_a_login_they_apply_to(dsn: str, tmp_path: Path) -> None:
    owner = owner_login(dsn, "rlsowner")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(SCHEMA)
    superuser = agent19("sql", "--dsn", dsn, QUERY)  # the tests opt in to privileged reads (conftest)
    assert superuser.returncode == 0 and "SECURITY DEFINER" not in superuser.stdout + superuser.stderr, \
        superuser.stdout + superuser.stderr
    own = agent19("sql", "--dsn", owner, QUERY)
    assert own.returncode == 0, own.stdout + own.stderr
    with reader_login(dsn, tmp_path) as reader:
        read = agent19("sql", "--dsn", owner, "--read-dsn", reader, QUERY)
    assert read.returncode != 0 and "SECURITY DEFINER" in read.stdout + read.stderr, read.stdout + read.stderr
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("ALTER TABLE public.tasks FORCE ROW LEVEL SECURITY")
    forced = agent19("sql", "--dsn", owner, QUERY)
    assert forced.returncode != 0 and "SECURITY DEFINER" in forced.stdout + forced.stderr, forced.stdout
