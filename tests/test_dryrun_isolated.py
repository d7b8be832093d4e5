"""Dry runs in an isolated copy (agent19.migrate.dryrun.isolated): the target's schema in a throwaway cluster.

The database below has what real ones have: an audit trigger whose function uses EXECUTE. The ordinary dry run then
says "could not test" for every statement (the guard cannot read that code, and the server runs it for any
statement) and points at the isolated run; the isolated run tests the migration — by its own merit, with the locks
the server shows — in a copy where code that acts outside a transaction reaches nobody's sessions or sequences.
"""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.db.throwaway_cluster import server_bindir
from agent19.errors import InputError
from agent19.migrate.dryrun.isolated import isolated_dry_run
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from agent19.ops.backup.workdir import PREFIXES
from tests.conftest import need, session_settings
from tests.scratch_dryruns import owner
from tests.test_backup_cleanup import _alive

SETUP = """
CREATE TABLE orders (id serial PRIMARY KEY, total int NOT NULL);
CREATE TABLE audit (tbl text, op text);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO audit VALUES (%L, %L)', TG_TABLE_NAME, TG_OP);
  RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit_row();
INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) g;
"""

KILLER = """
CREATE FUNCTION kill_peers() RETURNS int LANGUAGE plpgsql AS $$
DECLARE n int := 0; r record;
BEGIN
  FOR r IN SELECT pid FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid() LOOP
    PERFORM pg_terminate_backend(r.pid);
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;
SELECT kill_peers();
SELECT setval('orders_id_seq', 1);
DO $$ BEGIN EXECUTE 'SELECT setval(''orders_id_seq'', 2)'; END $$;
ALTER TABLE orders ADD COLUMN note text;
"""


def _db(login: str, **settings: Any) -> Database:
    return Database(session_settings(dsn=login, mode="dry-run", **settings))


def _isolated(login: str, sql: str, work: Path, **options: Any) -> Any:
    db = _db(login)
    try:
        return isolated_dry_run(db, parse_sql(sql), work_base=work, **options)
    finally:
        db.close()


def _catalog(login: str) -> list[Any]:
    with psycopg.connect(login, autocommit=True) as c:
        return c.execute("SELECT c.relname, c.relkind, c.relfilenode, a.attname FROM pg_class c JOIN pg_attribute a "
                         "ON a.attrelid = c.oid WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 "
                         "ORDER BY 1, 4").fetchall() + c.execute(
            "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1").fetchall()


def _no_cluster_left(work: Path) -> None:
    """No work directory of an isolated run under ``work``, and no server running from one."""
    assert not [p for p in work.iterdir() if p.name.startswith(PREFIXES[1])], list(work.iterdir())
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(work) not in ps, [ln for ln in ps.splitlines() if str(work) in ln]


@pytest.fixture
def app(dsn: str) -> str:
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    return owner(dsn, SETUP)



def test_an_execute_trigger_stops_the_ordinary_dry_run_and_the_isolated_one_tests(app, work):
    sql = "ALTER TABLE orders ADD COLUMN note text;\nUPDATE orders SET note = 'x' WHERE id < 10;\n"
    db = _db(app)
    try:
        plain = dry_run(db, parse_sql(sql))
    finally:
        db.close()
    assert plain.summary.startswith("COULD NOT TEST"), plain.summary
    for s in plain.statements:  # every statement, and the text says what would test it
        assert s.untested and "EXECUTE in public.audit_row" in s.untested, s
        assert "a dry run in an isolated copy of the schema (`isolated`) would run it" in s.untested, s.untested

    before = _catalog(app)
    r = _isolated(app, sql, work)
    add, update = r.statements
    assert r.passed and r.summary.startswith("PASSED"), r.summary
    assert add.ran_in == "transaction" and not add.untested and add.error is None, add
    assert ("AccessExclusiveLock", "public.orders") == add.strongest, add.locks
    assert update.ran_in == "transaction" and update.rows == 0, update  # no rows in the copy
    assert r.isolated is not None and r.isolated.removed and r.isolated.major == 15
    assert "throwaway PostgreSQL 15 cluster" in r.summary and "no rows" in r.summary, r.summary
    assert r.isolated.role == psycopg.conninfo.conninfo_to_dict(app)["user"]
    assert "@" not in r.database or "password" not in r.database
    assert _catalog(app) == before  # the target was only dumped
    _no_cluster_left(work)

    # fed to the plan: the locks are the server's, the durations (of empty tables) are not used
    from agent19.migrate.planning.plan import PlanOptions, plan_migration

    plan = plan_migration(sql=sql, options=PlanOptions(dry_run=r))
    assert plan.operations[0].lock_level == "AccessExclusiveLock"
    assert all(op.estimated_seconds is None for op in plan.operations), plan.operations
    assert any("isolated copy of the schema (no rows)" in f.message for f in plan.findings)
    assert r.to_evidence()["statements"][0]["seconds"] is None


def test_the_isolated_run_fails_by_the_migrations_own_merit(app, work):
    r = _isolated(app, "ALTER TABLE orders ADD COLUMN total int;\nALTER TABLE orders ADD COLUMN note text;\n", work)
    first, second = r.statements
    assert not r.passed and r.summary.startswith("FAILED at statement 1"), r.summary
    assert first.error and 'column "total" of relation "orders" already exists' in first.error.message
    assert second.error is None and not second.untested
    _no_cluster_left(work)  # also when the migration fails


def test_code_that_kills_sessions_and_sets_sequences_runs_only_in_the_copy(app, work):
    with psycopg.connect(app, autocommit=True) as session:  # the application's own session, same role
        pid = session.execute("SELECT pg_backend_pid()").fetchone()[0]
        seq = session.execute("SELECT last_value FROM orders_id_seq").fetchone()
        before = _catalog(app)

        db = _db(app)
        try:
            plain = dry_run(db, parse_sql(KILLER))
        finally:
            db.close()
        assert not plain.passed  # pg_terminate_backend: refused on the target, and said what would run it
        assert any("would run it" in (s.note or "") for s in plain.statements), [s.note for s in plain.statements]

        r = _isolated(app, KILLER, work)
        create, kill, setval, do, add = r.statements
        for s in (kill, setval, do, add):
            assert s.ran_in == "transaction" and s.error is None and not s.untested, s
        assert r.passed, (r.summary, r.findings)
        assert ("AccessExclusiveLock", "public.orders") == add.strongest
        # the application's session is alive, the real sequence where it was, the catalog unchanged
        assert session.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert session.execute("SELECT last_value FROM orders_id_seq").fetchone() == seq
        assert _catalog(app) == before
    _no_cluster_left(work)


def test_what_leaves_the_copy_is_still_refused(app, dsn, work):
    with psycopg.connect(dsn, autocommit=True) as c:
        available = {r[0] for r in c.execute("SELECT name FROM pg_available_extensions")}
    need({"dblink", "postgres_fdw"} <= available, "dblink and postgres_fdw are not installed (postgresql-contrib)")
    with psycopg.connect(dsn, autocommit=True) as c:  # as the superuser: extensions that need one
        c.execute("CREATE EXTENSION dblink")
        c.execute("CREATE EXTENSION postgres_fdw")
    sql = ("SELECT dblink_exec('dbname=postgres', 'SELECT 1');\n"
           "SELECT pg_read_file('/etc/hostname');\n"
           "ALTER TABLE orders ADD COLUMN note text;\n"
           "CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres');\n")
    r = _isolated(app, sql, work)
    remote, files, add, server = r.statements
    assert remote.error and "dblink" in remote.error.message and "refused" in (remote.note or ""), remote
    assert files.error and "pg_read_file" in files.error.message, files
    # with dblink in the copy, code agent19 cannot read (the EXECUTE trigger) could reach it: not run
    assert add.untested and "dblink" in add.untested and "leaves this isolated copy" in add.untested, add.untested
    # a foreign server reaches outside the copy too (review r33 F4)
    assert server.ran_in == "skipped" and "foreign server" in (server.untested or server.note or ""), server
    assert not r.passed
    _no_cluster_left(work)
    db = _db(app)  # on the target, the same statement's text does not point at an isolated run that would not run it
    try:
        plain = dry_run(db, parse_sql("ALTER TABLE orders ADD COLUMN note text;\n"))
    finally:
        db.close()
    assert plain.statements[0].untested and "isolated" not in plain.statements[0].untested, plain.statements[0]


def test_the_contained_setting_on_a_server_that_is_no_isolated_copy_refuses_everything(app):
    """The guard's contained setting is a token the throwaway cluster holds too: set on a Database of the real target
    (a library caller's mistake), nothing runs there — not the kill, not even a harmless statement."""
    with psycopg.connect(app, autocommit=True) as session:
        pid = session.execute("SELECT pg_backend_pid()").fetchone()[0]
        db = _db(app)
        db.contained = "not-the-servers"
        try:
            r = dry_run(db, parse_sql(KILLER))
        finally:
            db.close()
        assert not r.passed
        for s in r.statements[1:]:
            assert s.ran_in == "skipped" and "not the throwaway cluster agent19 made" in (s.note or ""), s
        assert session.execute("SELECT pg_backend_pid()").fetchone()[0] == pid


def test_no_server_programs_of_that_major_is_a_clear_error(tmp_path):
    with pytest.raises(InputError) as caught:
        server_bindir(15, [tmp_path / "nothing-here"])
    assert "no PostgreSQL 15 server programs" in caught.value.message
    assert "postgresql-15" in (caught.value.hint or "")
    with pytest.raises(InputError) as caught:  # the real lookup: no server of major 99 anywhere
        server_bindir(99)
    assert "postgresql-99" in (caught.value.hint or "")


def _cli(login: str, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": login, "AGENT19_MODE": "dry-run", "TMPDIR": str(work)}
    return subprocess.run([sys.executable, "-m", "agent19", "dry-run", *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_cli_isolated_json_and_text(app, work, tmp_path):
    m = tmp_path / "0001_note.up.sql"
    m.write_text("ALTER TABLE orders ADD COLUMN note text;\n")
    plain = _cli(app, work, str(m), "--format", "text")
    assert plain.returncode == 1 and "--isolated" in plain.stdout, plain.stdout + plain.stderr
    done = _cli(app, work, str(m), "--isolated", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    out = json.loads(done.stdout)
    assert out["passed"] and out["isolated"]["removed"] and out["isolated"]["major"] == 15
    add = out["statements"][0]
    assert any(lk["mode"] == "AccessExclusiveLock" and lk["relation"] == "public.orders" for lk in add["locks"])
    text = _cli(app, work, str(m), "--isolated", "--format", "text")
    assert text.returncode == 0 and "throwaway PostgreSQL 15 cluster" in text.stdout, text.stdout + text.stderr
    assert "throwaway cluster removed: yes" in text.stdout
    _no_cluster_left(work)


async def test_mcp_isolated_argument(app, work):
    from tests.mcp_client import stdio_session

    async with stdio_session("--mode", "dry-run", env={"DATABASE_URL": app, "TMPDIR": str(work)}) as session:
        plain = await session.call_tool("test_migration", {"sql": "ALTER TABLE orders ADD COLUMN note text"})
        text = "".join(c.text for c in plain.content if hasattr(c, "text"))
        assert "`isolated`" in text, text
        seen: list[tuple[float, str | None]] = []

        async def progress(value: float, total: float | None, message: str | None) -> None:
            seen.append((value, message))

        done = await session.call_tool("test_migration", {"sql": "ALTER TABLE orders ADD COLUMN note text",
                                                          "isolated": True}, progress_callback=progress)
        assert not done.is_error, done
        assert any("throwaway PostgreSQL 15 cluster" in (m or "") for _, m in seen), seen
        values = [v for v, _ in seen]
        assert all(b > a for a, b in pairwise(values)), values  # MCP: progress always increases
        body = done.structured_content or {}
        assert body.get("passed") is True and body["isolated"]["removed"], body
        undone = await session.call_tool("test_migration", {  # the rollback is verified in the copy too
            "sql": "ALTER TABLE orders ADD COLUMN note text", "down_sql": "ALTER TABLE orders DROP COLUMN note",
            "isolated": True, "detail": "full"})
        body = undone.structured_content or {}
        assert body.get("passed") is True and body["rollback"]["verified"], body
    _no_cluster_left(work)


def test_a_standby_is_copied_from_too(work):
    """The ordinary dry run refuses a standby (it refuses every write); an isolated one only reads it (pg_dump)."""
    from tests.conftest import primary_and_standby

    with primary_and_standby("CREATE TABLE orders (id int PRIMARY KEY)") as (_, standby):
        r = _isolated(standby.dsn, "ALTER TABLE orders ADD COLUMN note text;\n", work)
        assert r.passed and r.isolated is not None and r.isolated.removed, (r.summary, r.findings)
        assert r.statements[0].strongest == ("AccessExclusiveLock", "public.orders")
    _no_cluster_left(work)


def test_a_running_server_prepares_no_scratch_database_in_a_cluster_about_to_be_removed(app, work, pool,
                                                                                       monkeypatch):
    """`agent19 serve` makes the next scratch database ahead after a dry run (scratch_pool); never in an isolated
    copy, whose cluster is removed as the dry run returns. Control: the ordinary dry run of the same target does."""
    from agent19.migrate.dryrun import scratch_pool

    prepared: list[Any] = []
    real = scratch_pool._prepare

    def recording(db: Any, *args: Any) -> None:  # the real one too: its end is what settle() waits for
        prepared.append(db)
        real(db, *args)

    monkeypatch.setattr(scratch_pool, "_prepare", recording)
    hidden = "ALTER TABLE audit ADD COLUMN note text;\nALTER TABLE audit ALTER COLUMN note TYPE varchar(10);\n"
    r = _isolated(app, hidden, work, scratch_copy="schema")
    assert r.passed and r.statements[1].isolated, (r.summary, r.statements[1])  # re-observed in a scratch database
    scratch_pool.settle(10)
    assert prepared == []
    with psycopg.connect(app, autocommit=True) as c:  # the ordinary dry run: no EXECUTE trigger on audit itself,
        c.execute("DROP TRIGGER orders_audit ON orders")  # but the database-wide check: drop the trigger first
    db = _db(app)
    try:
        dry_run(db, parse_sql(hidden), scratch_copy="schema")
    finally:
        db.close()
    scratch_pool.settle(10)
    assert len(prepared) == 1 and not prepared[0].contained


def _sleeping_in_a_copy(work: Path, user: str) -> bool:
    """An isolated run's cluster under ``work`` is running the migration's pg_sleep (``user``: the login there)."""
    for pidfile in work.glob(f"{PREFIXES[1]}*/copy/postmaster.pid"):
        lines = pidfile.read_text().splitlines()
        if len(lines) < 5:
            continue
        try:
            with psycopg.connect(host=lines[4], port=lines[3], user=user, dbname="postgres",
                                 connect_timeout=2) as c:
                return bool(c.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
                                      ).fetchone()[0])
        except psycopg.Error:
            return False
    return False


def _sleeping_run(app: str, work: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``agent19 dry-run --isolated`` of a migration that sleeps 60 s in the copy, once it sleeps there."""
    from tests.conftest import as_at_a_terminal, until

    m = tmp_path / "0001_sleep.up.sql"
    m.write_text("SELECT pg_sleep(60);\n")
    env = {**os.environ, "DATABASE_URL": app, "AGENT19_MODE": "dry-run", "TMPDIR": str(work),
           "AGENT19_STATEMENT_TIMEOUT": "2min"}
    login = psycopg.conninfo.conninfo_to_dict(app)["user"]
    child = subprocess.Popen([sys.executable, "-m", "agent19", "dry-run", str(m), "--isolated"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_at_a_terminal)
    try:
        until("the migration to run in the isolated copy", lambda: _sleeping_in_a_copy(work, login), timeout=60,
              every=0.2)
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child


def _postmaster(work: Path) -> tuple[Path, int]:
    """The isolated run's work directory under ``work`` and its cluster's postmaster pid."""
    [pidfile] = work.glob(f"{PREFIXES[1]}*/copy/postmaster.pid")
    return pidfile.parent.parent, int(pidfile.read_text().splitlines()[0])




def _supervisors_of(directory: Path) -> list[int]:
    """The pids of the processes running agent19.db.cluster_supervisor for ``directory``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent19.db.cluster_supervisor" in args and str(directory).encode() in args:
            found.append(int(cmdline.parent.name))
    return found


def test_ctrl_c_and_sigterm_remove_the_cluster(app, work, tmp_path):
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        child = _sleeping_run(app, work, tmp_path)
        try:
            child.send_signal(sig)
            child.wait(timeout=30)
        finally:
            child.kill()
        # Ctrl-C: status 130; SIGTERM: ended by it, after the cleanup
        assert child.returncode == (130 if sig == signal.SIGINT else -signal.SIGTERM), child.stderr.read()
        _no_cluster_left(work)


def test_a_sigkilled_runs_cluster_dies_with_it(app, work, tmp_path):
    """j05: nothing runs in a SIGKILLed process; its copy's postmaster kept running (its disk and time limits
    enforced by nobody) until the next run. The work directory's supervisor process stops it and removes the
    directory."""

    child = _sleeping_run(app, work, tmp_path)
    directory, postmaster = _postmaster(work)
    _killed_and_gone(child, directory, postmaster)
    _no_cluster_left(work)


def _killed_and_gone(child, directory, postmaster) -> None:
    """SIGKILL agent19 (``child``); within 30 s its copy's postmaster is gone and its work directory removed."""
    import signal
    import time

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    start = time.monotonic()
    while (_alive(postmaster) or directory.exists()) and time.monotonic() - start < 30:
        time.sleep(0.1)
    assert not _alive(postmaster), f"the copy's postmaster {postmaster} still runs 30 s after agent19 was killed"
    assert not directory.exists(), list(directory.iterdir())


def test_a_run_killed_with_its_supervisor_is_removed_by_the_next(app, work, tmp_path):
    """The fallback, when the supervisor is killed too (a kill of the whole process group, a reboot):
    remove_leftovers, which every run calls first."""
    import signal

    from agent19.ops.backup.workdir import remove_leftovers

    child = _sleeping_run(app, work, tmp_path)
    directory, postmaster = _postmaster(work)
    [supervisor] = _supervisors_of(directory)
    os.kill(supervisor, signal.SIGKILL)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert directory.exists() and _alive(postmaster)  # nothing ran on the way out
    removed = remove_leftovers(work)
    assert removed == [str(directory)], removed
    _no_cluster_left(work)


def test_pg_dump_failing_is_a_clear_error_and_leaves_nothing(app, dsn, work):
    import threading

    holder = psycopg.connect(dsn)  # pg_dump cannot lock orders within lock_timeout
    holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(20, holder.rollback)
    release.start()
    try:
        db = _db(app, lock_timeout="300ms")
        try:
            with pytest.raises(InputError) as caught:
                isolated_dry_run(db, parse_sql("ALTER TABLE audit ADD COLUMN note text;\n"), work_base=work)
        finally:
            db.close()
    finally:
        release.cancel()
        holder.close()
    assert "could not copy the target's schema: pg_dump waited more than 300 ms" in caught.value.message, caught.value
    _no_cluster_left(work)


HIDDEN = """
CREATE SCHEMA hidden;
CREATE TABLE hidden.t (id int);
CREATE FUNCTION hidden.stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TABLE public.secret (id int);
CREATE VIEW public.secret_ids AS SELECT id FROM public.secret;
CREATE TABLE public."odd ""name"".*" (id int);
"""


def test_what_the_login_cannot_read_is_left_out_of_the_copy_and_refused_there_as_on_the_target(app, dsn, work):
    """j06: a schema the login has no USAGE on, or a table it may not SELECT (pg_dump must lock it), made every
    isolated run fail at pg_dump. The copy now leaves them out (said in the result), and a statement touching one
    is refused there for the privilege, as on the target."""
    login = psycopg.conninfo.conninfo_to_dict(app)["user"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(HIDDEN)
        c.execute("CREATE TRIGGER orders_stamp BEFORE INSERT ON public.orders FOR EACH ROW "
                  "EXECUTE FUNCTION hidden.stamp()")
        c.execute(f'GRANT SELECT ON hidden.t TO "{login}"')  # but no USAGE on hidden
    r = _isolated(app, "ALTER TABLE orders ADD COLUMN note text;\nINSERT INTO orders (total) VALUES (1);\n", work)
    assert r.passed and not any(s.untested or s.error for s in r.statements), r.summary
    notes = r.isolated.restore_errors if r.isolated else []
    [left_out] = [n for n in notes if "left out of the copy" in n]
    assert left_out.startswith("3 table(s) this login cannot read on the target"), left_out
    assert 'hidden.t, public.odd "name".*, public.secret;' in left_out, left_out
    assert notes == [left_out], notes  # the view over secret and the function in hidden are restored
    for touching, refused in (("ALTER TABLE secret ADD COLUMN x int;\n", "table secret"),
                              ("INSERT INTO hidden.t VALUES (1);\n", "schema hidden"),
                              ('SELECT * FROM "odd ""name"".*";\n', 'table odd "name".*'),
                              ("SELECT * FROM secret_ids;\n", "view secret_ids")):
        r = _isolated(app, touching, work)
        [s] = r.statements
        assert s.error is None and s.untested and s.untested.startswith("this login lacks a privilege"), (touching, s)
        assert refused in s.untested, (refused, s.untested)
    _no_cluster_left(work)


def test_what_could_not_be_restored_is_said(app, dsn, work):
    with psycopg.connect(dsn, autocommit=True) as c:  # an event trigger: only a superuser makes one
        c.execute("CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$")
        c.execute("CREATE EVENT TRIGGER on_ddl ON ddl_command_end EXECUTE FUNCTION public.on_ddl()")
    r = _isolated(app, "ALTER TABLE orders ADD COLUMN note text;\n", work)
    assert r.isolated is not None and r.isolated.restore_errors, r.isolated
    assert any("event trigger" in e for e in r.isolated.restore_errors), r.isolated.restore_errors
    assert any(f.severity == "warning" and "isolated copy differs from the target" in f.message for f in r.findings)
    assert r.statements[0].error is None and not r.statements[0].untested
    _no_cluster_left(work)


DEFINER = """
CREATE ROLE {other} NOLOGIN;
CREATE TABLE public.ledger (op text);
ALTER TABLE public.ledger OWNER TO {other};
CREATE FUNCTION public.log_op() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN INSERT INTO public.ledger VALUES (TG_OP); RETURN NEW; END $$;
CREATE TRIGGER orders_log AFTER INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION public.log_op();
CREATE FUNCTION public.plain() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
"""


def test_a_superusers_security_definer_function_is_said_and_its_permission_error_is_not_the_migrations(app, dsn,
                                                                                                      work):
    """The copy has no superuser but its own: a function a superuser owns on the target is owned there by a role of
    that name without attributes. A SECURITY DEFINER one runs there without the superuser's powers: the result names
    it, and a permission error raised inside it says the copy cannot test the statement (not the migration's
    failure, nor the login's missing privilege)."""
    import secrets

    other = f"ledger_owner_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as c:
        superuser = c.execute("SELECT current_user").fetchone()[0]
        c.execute(DEFINER.format(other=other))
    try:
        r = _isolated(app, "INSERT INTO orders (total) VALUES (5);\n", work)
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:  # roles are the server's: not dropped with the database
            c.execute(f"DROP TABLE public.ledger; DROP ROLE {other}")
    notes = r.isolated.restore_errors if r.isolated else []
    [said] = [n for n in notes if "SECURITY DEFINER" in n]
    assert said.startswith("1 SECURITY DEFINER function(s) owned by a superuser (or a role with BYPASSRLS or a "
                           "predefined role's membership) on the target run without it in the copy"), said
    assert f"public.log_op() (owned by {superuser})" in said and "plain" not in said, said
    [s] = r.statements
    assert s.error is None and s.untested, s
    assert s.untested.startswith("not testable in the isolated copy: function public.log_op() runs there without "
                                 f"superuser (owned by superuser {superuser} on the target, SECURITY DEFINER)"), s
    assert "permission denied for table ledger" in s.untested, s.untested
    assert "this login lacks a privilege" not in s.untested, s.untested
    _no_cluster_left(work)
