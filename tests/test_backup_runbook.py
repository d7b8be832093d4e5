"""The restore runbook: this server's version and commands, measured timings, no password; its logical
restore commands work as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.ops.backup.logical import verify_logical
from agent19.ops.backup.runbook import restore_runbook
from tests.conftest import run_sql


def test_runbook_carries_measured_timings_and_version_specific_commands(pg, dsn, tmp_path):
    run_sql(dsn, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
    verified = verify_logical(Database(Settings.load(dsn=dsn, mode="dry-run")))
    result_file = tmp_path / "verify.json"
    result_file.write_text(verified.model_dump_json())
    secret_dsn = make_conninfo(dsn, password="hunter2-secret")
    book = restore_runbook(Database(Settings.load(dsn=secret_dsn)), verify_result=str(result_file),
                           archive_dir="/srv/wal", backup_dir="/srv/base", write_dir=str(tmp_path / "out"))
    md = book.markdown
    assert book.major == pg.major and f"{book.bindir}/pg_restore --jobs=4" in md
    assert book.bindir.endswith(f"/{pg.major}/bin") or "pginstall" in book.bindir
    assert "pg_verifybackup /srv/base" in md
    assert "recovery.signal" not in md and "the server recovers to the end of the backup only" in md  # archiving off
    assert f"{verified.restore_estimate_s:.1f} s" in md or f"{round(verified.restore_estimate_s, 1)} s" in md
    assert verified.estimate_method in md
    assert "archive_mode = `off`" in md and "Point-in-time recovery is impossible" in md
    assert "hunter2-secret" not in md and "hunter2-secret" not in book.model_dump_json()
    assert json.loads((tmp_path / "out" / "restore-runbook.json").read_text())["major"] == pg.major
    assert (tmp_path / "out" / "restore-runbook.md").read_text() == md


def test_the_logical_restore_commands_work_as_written(dsn, tmp_path):
    run_sql(dsn, "CREATE TABLE t (id int PRIMARY KEY, v text);"
                 "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g")
    book = restore_runbook(Database(Settings.load(dsn=dsn)))
    section = md_section(book.markdown, "## A.")
    commands = [c for c in re.findall(r"```sh\n(.*?)```", section, re.S) if "agent19" not in c]
    for command in commands:
        done = subprocess.run(command.strip(), shell=True, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    with psycopg.connect(make_conninfo(dsn, dbname=f"{book.database}_restored")) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (50,)
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{book.database}_restored" WITH (FORCE)')


def md_section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end > 0 else None]


def test_cli_writes_the_runbook(dsn, tmp_path):
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "runbook", "--write", str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "DATABASE_URL": dsn})
    assert done.returncode == 0, done.stderr
    assert "# Restore runbook" in done.stdout and "Not measured yet" in done.stdout
    assert (tmp_path / "restore-runbook.md").exists()
