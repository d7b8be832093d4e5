"""The backfill emitted as a standalone Python script: run in its own process, SIGKILLed midway and
run again, every row is updated exactly once and its validation prints 0; it shares the executor's
checkpoint (same table, name, key encoding and batch query), so either resumes the other's run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from agent19.migrate.backfill.executor import BackfillSpec, batch_query, run_backfill
from agent19.migrate.backfill.scripts import procedure_sql, python_script, script_filename
from tests.test_backfill import kill_when

ROOT = Path(__file__).parent.parent
ROWS = 50_000
SPEC = BackfillSpec(table="big", set="v2 = v * 2", where="v2 IS NULL", name="double_v_script",
                    batch_size=1000, max_batch_size=2000, pause_ms=25)


def _make_big(dsn: str) -> None:
    """``big``: v2 to fill from v; a trigger counts the updates each row gets."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE big (id bigint PRIMARY KEY, v bigint NOT NULL, v2 bigint,
                              updates int NOT NULL DEFAULT 0);
            INSERT INTO big (id, v) SELECT g, g FROM generate_series(1, {ROWS}) g;
            CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
            CREATE TRIGGER count_updates BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION count_updates();
        """)


def _checkpoint(dsn: str, name: str) -> tuple[int, int, bool] | None:
    with psycopg.connect(dsn) as c:
        if c.execute("SELECT to_regclass('agent19_backfill_checkpoint') IS NULL").fetchone()[0]:
            return None
        row = c.execute("SELECT rows_scanned, rows_updated, finished_at IS NOT NULL FROM agent19_backfill_checkpoint "
                        "WHERE name = %s", (name,)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def _updates(dsn: str) -> dict[int, int]:
    """updates per row → number of rows."""
    with psycopg.connect(dsn) as c:
        return dict(c.execute("SELECT updates, count(*) FROM big GROUP BY updates").fetchall())


def _write_script(tmp_path: Path, spec: BackfillSpec) -> Path:
    path = tmp_path / script_filename(spec)
    path.write_text(python_script(spec))
    return path


def _load(path: Path) -> ModuleType:
    loaded = importlib.util.spec_from_file_location("agent19_emitted_backfill", path)
    assert loaded and loaded.loader
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_script_killed_midway_then_run_again_updates_every_row_exactly_once(dsn: str, tmp_path: Path) -> None:
    _make_big(dsn)
    script = _write_script(tmp_path, SPEC)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.Popen([sys.executable, str(script), dsn], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: (_checkpoint(dsn, SPEC.checkpoint_name()) or (0,))[0] >= 8_000, 60, "script")
    first_err = proc.stderr.read().decode() if proc.stderr else ""
    assert "rows visited" in first_err, first_err  # progress lines on stderr
    scanned, updated, finished = _checkpoint(dsn, SPEC.checkpoint_name()) or (0, 0, True)
    assert 0 < scanned < ROWS and not finished, "killed too late to prove anything"
    with psycopg.connect(dsn, autocommit=True) as c:
        for _ in range(500):  # the server ends the killed client's session (and its open batch) on its own
            if not c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                             "'agent19_backfill_script'").fetchone()[0]:
                break
            time.sleep(0.02)
        done = c.execute("SELECT count(*) FROM big WHERE updates > 0").fetchone()[0]
    assert done == scanned == updated, "the checkpoint and the updated rows disagree after the kill"

    # run again, DSN from DATABASE_URL this time
    again = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**env, "DATABASE_URL": dsn},
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "resuming from its checkpoint" in again.stderr
    assert again.stdout.strip().splitlines()[-1] == "validation: remaining rows matching the condition: 0"
    assert _updates(dsn) == {1: ROWS}, "some row was skipped or updated twice"
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM big WHERE v2 <> v * 2").fetchone()[0] == 0
    assert _checkpoint(dsn, SPEC.checkpoint_name()) == (ROWS, ROWS, True)

    # a third run finds it finished and still validates
    third = subprocess.run([sys.executable, str(script), dsn], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert third.returncode == 0 and "had already finished" in third.stderr, third.stderr
    assert third.stdout.strip().endswith("remaining rows matching the condition: 0")
    assert _updates(dsn) == {1: ROWS}


def test_script_and_executor_resume_each_others_checkpoint(dsn: str, tmp_path: Path) -> None:
    _make_big(dsn)
    spec = SPEC.model_copy(update={"name": "double_v_shared", "pause_ms": 0})
    script = _write_script(tmp_path, spec)
    module = _load(script)
    keys = [("id", "bigint")]
    with psycopg.connect(dsn) as c:  # the very same batch statement as the executor's
        for after in (False, True):
            assert (module.batch_query("public.big", keys, spec.set, spec.where, after).as_string(c)
                    == batch_query("public.big", keys, spec.set, spec.where, after).as_string(c))

    class Stop(Exception):
        pass

    def stop_after_some(done: float, total: float | None, message: str | None) -> None:
        if done >= 10_000:
            raise Stop  # the batch has committed; the run ends here, as if killed between batches

    with psycopg.connect(dsn, autocommit=True) as c, pytest.raises(Stop):
        run_backfill(c, spec, stop_after_some)
    scanned, _, finished = _checkpoint(dsn, spec.checkpoint_name()) or (0, 0, True)
    assert 10_000 <= scanned < ROWS and not finished

    out = subprocess.run([sys.executable, str(script), dsn], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"resuming from its checkpoint: {scanned:,} rows visited" in out.stderr
    assert out.stdout.strip().endswith("remaining rows matching the condition: 0")
    assert _updates(dsn) == {1: ROWS}

    with psycopg.connect(dsn, autocommit=True) as c:  # the executor reads the script's finished checkpoint
        result = run_backfill(c, spec)
    assert result.already_done and result.rows_updated == ROWS and result.remaining == 0


def test_cli_emits_the_script_and_the_procedure(dsn: str, tmp_path: Path) -> None:
    _make_big(dsn)
    args = [sys.executable, "-m", "agent19", "backfill", "big", "--set", SPEC.set, "--where", SPEC.where or "",
            "--name", "double_v_script", "--batch-size", "1000", "--max-batch-size", "2000", "--pause-ms", "25"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT19_", "DATABASE_URL", "PG"))}
    emitted = subprocess.run([*args, "--emit", "python"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)  # no database needed, read-only mode
    assert emitted.returncode == 0, emitted.stderr
    assert emitted.stdout == python_script(SPEC)
    compile(emitted.stdout, "backfill.py", "exec")
    proc = subprocess.run([*args, "--emit", "procedure", "--dsn", dsn], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == procedure_sql(SPEC, "id", "bigint", lock_timeout="2000ms")
    assert _updates(dsn) == {0: ROWS}, "emitting must not run anything"
    bad = subprocess.run([*args, "--emit", "bash"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_the_script_searches_pg_catalog_first(dsn: str, tmp_path: Path) -> None:
    """A database path listing pg_catalog after another schema (``evil, pg_catalog, public``) would run evil's
    look-alike of ``hashtext`` (the script's advisory lock key) as the script's login: the script sets the same path
    without pg_catalog's entry first, so only the built-ins run; its checkpoint table still lands where an unqualified
    CREATE lands with that path (evil, the first schema)."""
    _make_big(dsn)
    db = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("""
            CREATE SCHEMA evil;
            CREATE TABLE public.evil_ran (what text);
            CREATE FUNCTION evil.hashtext(text) RETURNS integer LANGUAGE sql
                AS $$ INSERT INTO public.evil_ran VALUES ('hashtext'); SELECT pg_catalog.hashtext($1) $$;
        """)
        c.execute(f'ALTER DATABASE "{db}" SET search_path = evil, pg_catalog, public')
    with psycopg.connect(dsn) as c:  # armed: an ordinary session of this database runs the look-alike
        c.execute("SELECT hashtext('x')")
        assert c.execute("SELECT count(*) FROM public.evil_ran").fetchone()[0] == 1
        c.rollback()
    script = _write_script(tmp_path, SPEC)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, str(script), dsn], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM public.evil_ran").fetchone()[0] == 0, "evil.hashtext ran"
        assert c.execute("SELECT to_regclass('evil.agent19_backfill_checkpoint') IS NOT NULL").fetchone()[0]
    assert _updates(dsn) == {1: ROWS}
