"""The restore runbook made for the application's role can be run as written (r25b M1).

As a login that owns its database but is neither superuser nor CREATEDB, step 2 (`CREATE DATABASE`) failed
with "permission denied to create database" and step 3 (`pg_restore --exit-on-error`) stopped at `CREATE
EXTENSION pg_stat_statements` (untrusted: only a superuser creates it); part B showed the packaged data
directory as if it were the server's. Now each step says who runs it: the superuser's steps are written for a
superuser, the login's restore leaves the extension out (`--use-list`) and owns what it restores
(`--no-owner`), and the guessed data directory is marked as a guess. The commands of part A are run here, each
as the role the runbook names.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.ops.backup.runbook import restore_runbook
from tests.conftest import owner_login, run_sql
from tests.test_backup_runbook import md_section


def test_the_app_roles_runbook_runs_as_written_each_step_by_whom_it_names(dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn)
    login = make_conninfo(app).split("user=")[1].split()[0]
    run_sql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")  # untrusted: the superuser made it
    run_sql(app, "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE VIEW tv AS SELECT id FROM t;"
                 "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g")
    book = restore_runbook(Database(Settings.load(dsn=app)))
    md = book.markdown
    section = md_section(md, "## A.")
    restored = f"{book.database}_restored"
    try:
        for command in [c for c in re.findall(r"```sh\n(.*?)```", section, re.S) if "agent19" not in c]:
            done = subprocess.run(command.strip(), shell=True, cwd=tmp_path, capture_output=True, text=True)
            assert done.returncode == 0, f"{command}\n{done.stderr}"
        with psycopg.connect(make_conninfo(dsn, dbname=restored, user=login)) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (50,)
            assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 't'").fetchone() == (login,)
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
                                ).fetchone() == (1,)
    finally:
        with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
    assert "Run by: **a superuser or a role with CREATEDB**" in section and "Run by: **a superuser**" in section
    assert "--no-owner --use-list=restore.list --dbname=" in section and "leaves out `pg_stat_statements`" in section
    # part B: a guessed data directory is said to be one, and who runs it
    assert book.data_directory is None and "**GUESS:**" in md and "is a GUESS" in md_section(md, "## B.")
    assert "the server's OS administrator" in md_section(md, "## B.")
