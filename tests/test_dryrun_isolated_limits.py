"""What an isolated dry run (agent19.migrate.dryrun.isolated) may cost the target and the machine it runs on, and
what it refuses to pretend: pg_dump's lock waits on the target are bounded by lock_timeout, the extensions its copy's
superuser creates are the target's (its catalog, never text inside the dump), the copy's writes are bounded, and
blocking measured on empty tables is refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.dryrun.isolated import isolated_copy, isolated_dry_run
from agent19.migrate.dryrun.scratch_schema import dump_schema
from agent19.migrate.parse import parse_sql
from tests.conftest import need, session_settings
from tests.scratch_dryruns import owner


@pytest.fixture
def app(dsn: str) -> str:
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    return owner(dsn, "CREATE TABLE o (id int PRIMARY KEY, v int); CREATE TABLE tsd (id int);")



def _isolated(login: str, sql: str, work: Path, settings: dict[str, Any] | None = None, **options: Any) -> Any:
    db = Database(session_settings(dsn=login, mode="dry-run", **(settings or {})))
    try:
        return isolated_dry_run(db, parse_sql(sql), work_base=work, **options)
    finally:
        db.close()


class _Holder:
    """Another session holding ACCESS EXCLUSIVE on ``table`` for ``seconds`` at most (released in a timer, so that
    code that waits without limit ends too — and fails the test: its timer had fired)."""

    def __init__(self, login: str, table: str, seconds: float) -> None:
        self.conn = psycopg.connect(login)
        self.conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        self.pid = self.conn.info.backend_pid
        self.timer = threading.Timer(seconds, self.conn.rollback)
        self.timer.start()

    def release(self) -> None:
        self.timer.cancel()
        self.timer.join()
        self.conn.close()


def test_pg_dump_of_the_schema_gives_up_after_lock_timeout_and_names_the_table(app):
    holder = _Holder(app, "tsd", 120)
    try:
        dump, failure = dump_schema(app, 15, lock_timeout_ms=400)
        still_held = holder.timer.is_alive()
    finally:
        holder.release()
    assert dump is None and still_held, failure  # it gave up while the other session still held its lock
    assert failure is not None and failure.startswith("pg_dump waited more than 400 ms for a lock on public.tsd "
                                                      f"held by pid {holder.pid}: "), failure
    # once free, the same dump works
    dump, failure = dump_schema(app, 15, lock_timeout_ms=400)
    assert failure is None and dump is not None and b"CREATE TABLE public.tsd" in dump


def test_the_ordinary_dry_runs_schema_dump_takes_the_sessions_lock_timeout(app):
    """The scratch copy's dump (agent19.migrate.dryrun.early_scratch.cached_dump, in an exported snapshot) is bounded
    by the session's lock_timeout too."""
    from agent19.migrate.dryrun.early_scratch import cached_dump

    db = Database(session_settings(dsn=app, mode="dry-run", lock_timeout="300ms"))
    holder = _Holder(app, "tsd", 120)
    try:
        (dump, failure), _how = cached_dump(db, 15)
        still_held = holder.timer.is_alive()
    finally:
        holder.release()
        db.close()
    assert dump is None and still_held, failure  # it gave up while the other session still held its lock
    assert failure is not None and failure.startswith("pg_dump waited more than 300 ms for a lock on public.tsd"), \
        failure


def test_an_isolated_run_does_not_wait_behind_the_targets_locks(app, work):
    holder = _Holder(app, "tsd", 120)
    try:
        with pytest.raises(InputError) as raised:
            _isolated(app, "ALTER TABLE o ADD COLUMN z int;", work, {"lock_timeout": "500ms"})
        still_held = holder.timer.is_alive()
    finally:
        holder.release()
    assert still_held  # it gave up while the other session still held its lock, not after
    assert str(raised.value).startswith("could not copy the target's schema: pg_dump waited more than 500 ms for a "
                                        f"lock on public.tsd held by pid {holder.pid}"), raised.value


INJECTED = """
CREATE TABLE t (id int);
COMMENT ON TABLE t IS '
CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA "Evil"" schema";
';
CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT '
CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;
CREATE SCHEMA ext;
' $$;
"""


def test_the_copy_gets_the_targets_extensions_not_those_named_in_its_texts(dsn, app, work):
    need(all(os.path.exists(f"/usr/share/postgresql/15/extension/{e}.control") for e in ("dblink", "file_fdw")),
         "the contrib extensions dblink and file_fdw are not installed")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(INJECTED)
    with psycopg.connect(dsn, autocommit=True) as c:  # the target's superuser: one extension that needs one
        c.execute("CREATE SCHEMA ext; CREATE EXTENSION file_fdw WITH SCHEMA ext")
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with isolated_copy(db, work_base=work) as copy, psycopg.connect(copy.db.dsn, autocommit=True) as c:
            made = c.execute("SELECT e.extname::text, n.nspname::text FROM pg_extension e JOIN pg_namespace n"
                             " ON n.oid = e.extnamespace ORDER BY 1").fetchall()
            schemas = [r[0] for r in c.execute("SELECT nspname::text FROM pg_namespace WHERE nspname !~ '^pg_'"
                                                " AND nspname <> 'information_schema' ORDER BY 1").fetchall()]
            comment = c.execute("SELECT obj_description('public.t'::regclass, 'pg_class')").fetchone()
            body = c.execute("SELECT prosrc FROM pg_proc WHERE proname = 'f'").fetchone()
    finally:
        db.close()
    assert made == [("file_fdw", "ext"), ("plpgsql", "pg_catalog")], made
    assert schemas == ["ext", "public"], schemas
    assert comment is not None and "CREATE EXTENSION IF NOT EXISTS dblink" in comment[0], comment  # the text stays
    # the line that creates the extension's schema (made first, by the superuser) is left out; the body's is not
    assert body is not None and "\nCREATE SCHEMA ext;\n" in body[0], body


def test_blocking_is_not_measured_on_the_empty_tables_of_an_isolated_copy(app, work, tmp_path):
    with pytest.raises(InputError, match="blocking is not measured in an isolated copy: its tables are empty"):
        _isolated(app, "ALTER TABLE o ADD COLUMN z int;", work, measure_blocking=True)
    m = tmp_path / "0001_z.up.sql"
    m.write_text("ALTER TABLE o ADD COLUMN z int;\n")
    env = {**os.environ, "DATABASE_URL": app, "AGENT19_MODE": "dry-run", "TMPDIR": str(work)}
    done = subprocess.run([sys.executable, "-m", "agent19", "dry-run", str(m), "--isolated", "--measure-blocking"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "blocking is not measured in an isolated copy" in done.stdout + done.stderr, done.stdout + done.stderr
    assert "not blocked" not in done.stdout, done.stdout
    assert not list(work.iterdir())  # refused before any copy was made


FILL = """CREATE TABLE fill AS SELECT g, md5(g::text) || md5((g + 1)::text) AS x FROM generate_series(1, 1500000) g;
SELECT 1;
"""


def test_an_isolated_run_stops_when_its_copy_writes_past_the_limit(app, work):
    with pytest.raises(InputError) as raised:  # FILL writes ~200 MB: it completes unless the limit stops it
        _isolated(app, FILL, work, {"isolated_max_mb": 100})
    assert str(raised.value).startswith("the isolated copy wrote more than 100 MB on this machine (its work directory "
                                        f"{work}/agent19-isolated-"), raised.value
    assert "AGENT19_ISOLATED_MAX_MB" in (raised.value.hint or ""), raised.value.hint
    assert not list(work.iterdir())  # stopped and removed


def test_the_copy_refuses_temporary_files_past_the_limit(app, work):
    db = Database(session_settings(dsn=app, mode="dry-run", isolated_max_mb=100))
    try:
        with isolated_copy(db, work_base=work) as copy, psycopg.connect(copy.db.dsn, autocommit=True) as c:
            shown = c.execute("SHOW temp_file_limit").fetchone()
            wal = c.execute("SHOW max_wal_size").fetchone()
    finally:
        db.close()
    assert shown == ("100MB",) and wal == ("64MB",), (shown, wal)


def test_the_watchdog_stops_a_cluster_that_runs_past_the_runs_time(app, work):
    from agent19.db import throwaway_cluster
    from agent19.migrate.dryrun.isolated_limits import Watchdog
    from agent19.ops.backup.workdir import work_dir

    bindir = throwaway_cluster.server_bindir(15)
    with work_dir(work, prefix="agent19-isolated-") as wd:
        cluster = throwaway_cluster.start(wd, bindir / "initdb", "admin", name="copy")
        with pytest.raises(InputError, match=r"^the isolated run took more than 1 s \(20 statement timeouts\): its "
                                             "cluster was stopped"):
            with Watchdog(wd, 10 * 1024**3, 1.0), psycopg.connect(cluster.dsn()) as c:
                c.execute("SELECT pg_sleep(30)")
        assert cluster.process is not None and cluster.process.wait(timeout=30) == 0


async def test_the_listing_says_when_to_use_an_isolated_run_and_what_it_does_not_prove():
    """What a model reads first (tools/list) says when an isolated run helps and what it does not prove; the tool's
    full text (agent19://tools/test_migration) says more."""
    import json

    from tests.mcp_client import stdio_session

    async with stdio_session() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        docs = json.loads((await session.read_resource("agent19://tools/test_migration")).contents[0].text)
    listed = tools["test_migration"]
    assert "isolated only if unreadable code made it 'could not test'" in listed.description, listed.description
    brief = listed.input_schema["properties"]["isolated"]["description"]
    assert "no durations" in brief and "no require_dry_run proof" in brief, brief
    full = docs["input_schema"]["properties"]["isolated"]["description"]
    for said in ("could not test", "not durations", "blocking", "no proof for require_dry_run", "lock_timeout",
                 "server programs needed here"):
        assert said in full, (said, full)
    assert "no require_dry_run proof" in docs["description"], docs["description"]


def test_leftover_removal_spares_a_fresh_directory_without_its_lock_file(tmp_path):
    """A run that has made its work directory but not yet its locked .owner is not removed by another run starting at
    the same moment; a directory left so (its run killed in between) is removed once older than the grace period."""
    from agent19.ops.backup.workdir import GRACE_S, PREFIXES, remove_leftovers

    fresh, stale, unlocked = (tmp_path / f"{PREFIXES[1]}{n}-deadbeef" for n in (1, 2, 3))
    for d in (fresh, stale, unlocked):
        d.mkdir()
    (unlocked / ".owner").touch()  # its owner is gone (nobody holds the lock): removed whatever its age
    old = time.time() - GRACE_S - 60
    os.utime(stale, (old, old))
    removed = remove_leftovers(tmp_path)
    assert sorted(removed) == [str(stale), str(unlocked)], removed
    assert fresh.is_dir()


def test_an_extension_of_another_version_in_the_copy_is_said(dsn, app, work):
    need(os.path.exists("/usr/share/postgresql/15/extension/citext--1.4.sql"), "contrib citext 1.4 is not installed")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION citext VERSION '1.4'")
        here = c.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'citext'").fetchone()[0]
    need(here != "1.4", "citext's default version here is the target's")
    r = _isolated(app, "ALTER TABLE o ADD COLUMN z int;", work)
    assert r.passed, r.summary
    said = f"extension citext is version {here} in the copy, 1.4 on the target"
    assert r.isolated is not None and said in r.isolated.restore_errors, r.isolated.restore_errors
    assert any(f.severity == "warning" and said in f.message for f in r.findings), r.findings


def test_a_template_scratch_copy_with_isolated_is_refused_with_what_to_do(app, work, tmp_path):
    """`--scratch-copy template --isolated` was accepted silently: a TEMPLATE copy (the target's rows) asked for, an
    empty schema copy in a throwaway cluster given. (schema and empty keep their meaning there: how the copy's own
    scratch databases are made; test_dryrun_isolated runs one with schema.)"""
    refused = "scratch_copy template (a copy with the target's rows) does not apply to an isolated dry run"
    with pytest.raises(InputError, match=re.escape(refused)):
        _isolated(app, "ALTER TABLE o ADD COLUMN z int;", work, scratch_copy="template")
    m = tmp_path / "0001_z.up.sql"
    m.write_text("ALTER TABLE o ADD COLUMN z int;\n")
    env = {**os.environ, "DATABASE_URL": app, "AGENT19_MODE": "dry-run", "TMPDIR": str(work)}
    done = subprocess.run([sys.executable, "-m", "agent19", "dry-run", str(m), "--isolated", "--scratch-copy",
                           "template"], capture_output=True, text=True, env=env, timeout=300, check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert refused in said and "leave scratch_copy (--scratch-copy) at auto (or schema) with isolated" in said, said
    assert not list(work.iterdir())  # refused before any copy was made


def test_the_disk_limit_holds_while_agent19_is_stopped(app, work, tmp_path):
    """The limits are enforced by the work directory's supervisor process (agent19.db.cluster_supervisor), not a
    thread of agent19's: with agent19 stopped (SIGSTOP: stuck, or being killed), a copy writing past the limit is
    still stopped; agent19, continued, reports it."""
    import signal

    from agent19.ops.backup.workdir import PREFIXES
    from tests.conftest import until

    m = tmp_path / "0001_fill.up.sql"
    m.write_text(FILL)
    env = {**os.environ, "DATABASE_URL": app, "AGENT19_MODE": "dry-run", "TMPDIR": str(work),
           "AGENT19_ISOLATED_MAX_MB": "100"}
    login = psycopg.conninfo.conninfo_to_dict(app)["user"]

    def filling() -> bool:
        for pidfile in work.glob(f"{PREFIXES[1]}*/copy/postmaster.pid"):
            lines = pidfile.read_text().splitlines()
            try:
                with psycopg.connect(host=lines[4], port=lines[3], user=login, dbname="postgres",
                                     connect_timeout=2) as c:
                    return bool(c.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE TABLE fill%'"
                                          ).fetchone()[0])
            except (psycopg.Error, IndexError):
                return False
        return False

    child = subprocess.Popen([sys.executable, "-m", "agent19", "dry-run", str(m), "--isolated"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        until("the copy to run the migration", filling, timeout=60, every=0.1)
        [pidfile] = work.glob(f"{PREFIXES[1]}*/copy/postmaster.pid")
        postmaster = int(pidfile.read_text().splitlines()[0])
        child.send_signal(signal.SIGSTOP)
        try:
            until("the copy's postmaster to be stopped with agent19 stopped",
                  lambda: not Path(f"/proc/{postmaster}").exists()
                  or Path(f"/proc/{postmaster}/stat").read_text().split()[2] == "Z", timeout=30, every=0.2)
        finally:
            child.send_signal(signal.SIGCONT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 2, out.decode() + err.decode()
    assert "the isolated copy wrote more than 100 MB on this machine" in out.decode() + err.decode()
    assert not list(work.iterdir())  # stopped and removed
