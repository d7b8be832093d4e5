"""Every session agent19 opens on a user's server searches pg_catalog first (agent19.db.catalog_first.pin).

A login's own ``search_path = shadow, pg_catalog`` (``ALTER ROLE … SET``: it applies in every database, scratch
ones too) made ``shadow.pg_proc`` answer the read-only guard and ``shadow.format_type`` run as agent19's login
(review r26b j07, generalised). agent19 now sets such a session's path to the same list without the explicit
pg_catalog: the server then searches pg_catalog implicitly first, while ``current_schema()`` and where an unqualified
CREATE lands stay the login's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.db import catalog_first
from agent19.db.connection import Database
from tests.conftest import need, owner_login, session_settings

ROOT = Path(__file__).parent.parent


def _agent19(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args, "--format", "json", "--data-dir", str(data_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def _login(dsn: str) -> tuple[str, str]:
    owner = owner_login(dsn, "shadowed")
    return owner, conninfo_to_dict(owner)["user"]


def _set_path(dsn: str, login: str, path: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:  # the role's own setting: every database, scratch ones too
        c.execute(f'ALTER ROLE "{login}" SET search_path = {path}')


def _reset(dsn: str, login: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER ROLE "{login}" RESET ALL')


KILLER = ("CREATE FUNCTION public.f() RETURNS int STABLE LANGUAGE plpgsql AS "
          "$$ BEGIN PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim'; "
          "RETURN 1; END $$")
FORGED = """SELECT 'CREATE VIEW shadow.pg_proc AS SELECT ' || string_agg(CASE attname WHEN 'prosrc' THEN
  'CASE WHEN p.proname = ''f'' THEN ''BEGIN RETURN 1; END'' ELSE p.prosrc END AS prosrc'
  ELSE 'p.' || quote_ident(attname) END, ', ' ORDER BY attnum) || ', p.xmin FROM pg_catalog.pg_proc p'
  FROM pg_catalog.pg_attribute WHERE attrelid = 'pg_catalog.pg_proc'::regclass AND attnum > 0 AND NOT attisdropped"""
"""A view shadow.pg_proc, every column of pg_proc (this server's), f's body shown harmless."""


def test_the_read_only_guard_reads_the_true_catalog_under_a_shadowing_login_path(dsn, tmp_path):
    """``agent19 sql "SELECT f()"`` (read-only) refuses f, whose body ends other sessions, exactly as without the
    shadow: the login's ``search_path = shadow, pg_catalog`` and a view shadow.pg_proc that shows f harmless do not
    reach agent19's guard, and the victim session lives."""
    owner, login = _login(dsn)
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(KILLER)
        c.execute("CREATE SCHEMA shadow")
    plain = _agent19("sql", "SELECT f()", "--dsn", owner, data_dir=tmp_path)
    assert plain.returncode != 0 and "pg_terminate_backend" in plain.stdout + plain.stderr, plain.stdout + plain.stderr
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(c.execute(FORGED).fetchone()[0])
        forged = c.execute("SELECT prosrc FROM shadow.pg_proc WHERE proname = 'f'").fetchone()[0]
    assert "terminate" not in forged  # the trap is armed: the view shows f harmless
    _set_path(dsn, login, "shadow, pg_catalog, public")
    victim = psycopg.connect(owner + " application_name=victim", autocommit=True)
    try:
        shadowed = _agent19("sql", "SELECT f()", "--dsn", owner, data_dir=tmp_path)
        alive = victim.execute("SELECT 1").fetchone()[0] == 1
    finally:
        victim.close()
        _reset(dsn, login)
    assert shadowed.returncode == plain.returncode, shadowed.stdout + shadowed.stderr
    assert shadowed.stdout + shadowed.stderr == plain.stdout + plain.stderr  # the same refusal, word for word
    assert alive, "f ran: the victim session was ended"


PLANTED = [
    ("format_type(oid, integer)", "text", "pg_catalog.format_type($1, $2)"),
    ("current_setting(text)", "text", "pg_catalog.current_setting($1)"),
    ("current_setting(text, boolean)", "text", "pg_catalog.current_setting($1, $2)"),
    ("set_config(text, text, boolean)", "text", "pg_catalog.set_config($1, $2, $3)"),
    ("pg_get_indexdef(oid)", "text", "pg_catalog.pg_get_indexdef($1)"),
    ("pg_get_expr(pg_node_tree, oid)", "text", "pg_catalog.pg_get_expr($1, $2)"),
    ("pg_is_in_recovery()", "boolean", "pg_catalog.pg_is_in_recovery()"),
    ("pg_backend_pid()", "integer", "pg_catalog.pg_backend_pid()"),
]


def _plant(owner: str, token: str) -> None:
    """In schema shadow: built-ins' look-alikes that log ``token`` (a WARNING: the server's log keeps it whatever the
    transaction does, read-only or rolled back) and answer as the built-in does, so nothing else gives them away."""
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE SCHEMA shadow")
        for signature, returns, call in PLANTED:
            name = signature.split("(")[0]
            c.execute(f"CREATE FUNCTION shadow.{signature} RETURNS {returns} LANGUAGE plpgsql AS "
                      f"$$ BEGIN RAISE WARNING '{token} {name} ran'; RETURN {call}; END $$")


def test_a_shadowed_builtin_never_runs_in_any_agent19_session(pg, dsn, tmp_path):
    """describe, sql, a dry run whose CREATE INDEX CONCURRENTLY runs in a scratch database, with blocking probes
    (watch sessions) and a rollback check, an isolated dry run (its reads of the target): none of agent19's sessions
    runs the login's shadow.* look-alikes."""
    log = pg.directory / "postgres.log"
    need(log.exists(), "the test server's log file (tools/throwaway.py) is where the planted functions write")
    owner, login = _login(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER ROLE "{login}" CREATEDB')  # scratch databases are the login's
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, amount numeric, note text)")
        c.execute("CREATE INDEX orders_amount ON orders (amount) WHERE amount > 0")
        c.execute("INSERT INTO orders SELECT g, g, 'x' FROM generate_series(1, 200) g")
    token = f"planted-{uuid.uuid4().hex[:12]}"
    _plant(owner, token)
    _set_path(dsn, login, "shadow, pg_catalog, public")
    with psycopg.connect(owner) as c:  # the trap is armed: an ordinary session of the login runs them
        armed = c.execute("SELECT format_type(23, NULL)").fetchone()[0] == "integer"
    assert armed and token in log.read_text(errors="replace")
    start = log.stat().st_size
    migration = tmp_path / "001_up.sql"
    migration.write_text("ALTER TABLE orders ADD COLUMN extra int;\n"
                         "CREATE INDEX CONCURRENTLY orders_note ON orders (note);\n")
    down = tmp_path / "001_down.sql"
    down.write_text("DROP INDEX CONCURRENTLY IF EXISTS orders_note;\nALTER TABLE orders DROP COLUMN extra;\n")
    try:
        runs = [
            _agent19("describe", "orders", "--dsn", owner, data_dir=tmp_path),
            _agent19("sql", "SELECT count(*) AS n, current_schema() AS s FROM orders", "--dsn", owner,
                     data_dir=tmp_path),
            _agent19("dry-run", str(migration), "--down-files", str(down), "--verify-rollback", "--measure-blocking",
                     "--dsn", owner, "--mode", "dry-run", data_dir=tmp_path / "d"),
            # the isolated copy's reads of the target (its version, roles, owners, ACLs, settings, extensions)
            _agent19("dry-run", "--sql", "ALTER TABLE orders ADD COLUMN extra int", "--isolated", "--dsn", owner,
                     "--mode", "dry-run", data_dir=tmp_path / "i"),
        ]
    finally:
        _reset(dsn, login)
    ran = log.read_bytes()[start:].decode(errors="replace")
    for out in runs:
        assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: a dry run that found something
        assert token not in out.stdout + out.stderr
    assert token not in ran, [ln for ln in ran.splitlines() if token in ln][:5]
    described, read, dry, isolated = (json.loads(r.stdout) for r in runs)
    assert "numeric" in json.dumps(described)
    assert read["result"]["rows"] == [[200, "shadow"]], read  # the login's current_schema(), its path's first
    assert dry["passed"] and [s["ran_in"] for s in dry["statements"]] == ["transaction", "scratch"], dry
    assert all(s["probes"] for s in dry["statements"]), dry  # watch sessions probed both
    assert "rollback verified" in dry["summary"], dry["summary"]
    assert isolated["passed"] and isolated["isolated"], json.dumps(isolated)[:3000]


def test_current_schema_and_where_create_lands_are_the_logins(dsn, tmp_path):
    """With ``search_path = public, pg_catalog`` a read-only query's current_schema() is still public and an
    execute-mode CREATE TABLE lands in public (putting pg_catalog first would make both pg_catalog)."""
    owner, login = _login(dsn)
    _set_path(dsn, login, "public, pg_catalog")
    try:
        read = _agent19("sql", "SELECT current_schema() AS s, current_schemas(true)::text AS p", "--dsn", owner,
                        data_dir=tmp_path)
        made = _agent19("sql", "CREATE TABLE made_here (id int)", "--dsn", owner, "--mode", "execute",
                        data_dir=tmp_path)
    finally:
        _reset(dsn, login)
    assert read.returncode == 0, read.stdout + read.stderr
    rows = json.loads(read.stdout)["result"]["rows"]
    assert rows == [["public", "{pg_catalog,public}"]], rows  # pg_catalog implicit, first
    assert made.returncode == 0, made.stdout + made.stderr
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT to_regclass('public.made_here') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize(("path", "expected"), [
    ('"$user", pg_catalog, public', '"$user", "public"'),
    ("Shadow, PG_CATALOG", '"shadow"'),  # unquoted names fold to lower case, as the server folds them
    ('"we,ird", "a""b", pg_catalog', '"we,ird", "a""b"'),
    ("pg_temp, shadow, pg_catalog", '"pg_temp", "shadow"'),
    ("\u00d6kill, pg_catalog", '"\u00d6kill"'),  # A-Z only: the server leaves non-ASCII letters alone (UTF8)
])
def test_the_path_without_its_late_pg_catalog(path, expected):
    assert catalog_first.unshadowed(path) == expected


@pytest.mark.parametrize("path", ['"$user", public', "pg_catalog, shadow", "pg_temp, pg_catalog, shadow", ""])
def test_a_path_that_searches_pg_catalog_first_is_left_alone(path):
    assert catalog_first.unshadowed(path) is None


def test_a_schema_name_that_needs_quoting_round_trips(dsn):
    """Schemas named ``we,ird`` and ``a"b`` (and ``"$user"``) keep their places: the server reads the new path as
    the same schemas, in order, with pg_catalog searched first and current_schema() unchanged."""
    owner, login = _login(dsn)
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "we,ird"; CREATE SCHEMA "a""b"; CREATE SCHEMA "{login}"')
    _set_path(dsn, login, '"$user", "we,ird", "a""b", pg_catalog, public')
    try:
        with psycopg.connect(owner) as c:
            before = c.execute("SELECT current_schema()::text, current_schemas(true)::text[]").fetchone()
        db = Database(session_settings(dsn=owner, mode="read-only"))
        try:
            with db.read() as conn:
                after = conn.execute("SELECT current_schema()::text AS s, current_schemas(true)::text[] AS p, "
                                     "current_setting('search_path') AS v").fetchone()
            with catalog_first.connect(owner) as side:  # a side session, not in autocommit: left idle
                side_path = side.execute("SELECT current_schemas(true)::text[]").fetchone()[0]
                side.rollback()
        finally:
            db.close()
    finally:
        _reset(dsn, login)
    assert before == (login, [login, "we,ird", 'a"b', "pg_catalog", "public"]), before  # as the login wrote it
    assert after["s"] == login, after
    assert after["p"] == ["pg_catalog", login, "we,ird", 'a"b', "public"], after
    assert after["v"] == '"$user", "we,ird", "a""b", "public"', after
    assert side_path == ["pg_catalog", login, "we,ird", 'a"b', "public"], side_path


def test_a_path_in_the_dsns_options_is_pinned_too(dsn):
    """``options=-c search_path=…`` in the DSN (or PGOPTIONS) sets the session's path at startup: read and pinned the
    same way, for the pool and for a side session."""
    owner, _ = _login(dsn)
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE SCHEMA shadow")
    shadowed = owner + " options='-c search_path=shadow,pg_catalog,public'"
    db = Database(session_settings(dsn=shadowed, mode="read-only"))
    try:
        with db.read() as conn:
            pooled = conn.execute("SELECT current_schemas(true)::text[] AS p").fetchone()["p"]
    finally:
        db.close()
    with catalog_first.connect(shadowed, autocommit=True) as side:
        side_path = side.execute("SELECT current_schemas(true)::text[]").fetchone()[0]
    assert pooled == side_path == ["pg_catalog", "shadow", "public"], (pooled, side_path)
