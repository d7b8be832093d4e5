"""In read-only mode a write is not planned as a privileged main login (review r31 F3, F3b).

Planning a write needs the write's privileges, so `explain` and `advise` of an INSERT/UPDATE/DELETE plan it as the
main login, not the least-privilege reader. The planner folds what the table's owner put in its definitions (an
index expression here; defaults, rules and operators likewise) as that login: a superuser main login ran the owner's
code with a superuser's powers, even with a reader configured. Now it is refused in read-only mode, saying to connect
as the application's role (or to accept it with --allow-privileged-reads); a write planned as a main login that is
not privileged still works, and `advise-workload` leaves such a statement out instead of failing."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.conftest import need_stat_statements, owner_login
from tests.reader_login import reader_login
from tests.test_capacity_privileged_scan import LIE
from tests.test_cli import agent19

STRICT = {"AGENT19_ALLOW_PRIVILEGED_READS": "0"}  # the tests' default opts in (tests/conftest.py)


def _planted(dsn: str) -> str:
    owner = owner_login(dsn, "planner")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(LIE)
    return owner


def test_a_write_is_not_planned_as_a_superuser_main_login(dsn: str, tmp_path: Path) -> None:
    _planted(dsn)
    with reader_login(dsn, tmp_path) as reader:
        for sql in ("DELETE FROM public.events WHERE id = 1", "UPDATE public.events SET kind = 'x' WHERE id = 1"):
            out = agent19("explain", "--dsn", dsn, "--read-dsn", reader, "--no-analyze", sql, env=STRICT)
            text = out.stdout + out.stderr
            assert "owner code ran" not in text, text
            assert out.returncode == 1 and "planning a write needs the write's privileges" in text, text
            assert "--allow-privileged-reads" in text
        read = agent19("explain", "--dsn", dsn, "--read-dsn", reader, "--no-analyze",
                       "SELECT * FROM public.events WHERE kind = 'x'", env=STRICT)
        assert read.returncode == 0, read.stdout + read.stderr  # a read is planned as the reader


def test_a_write_is_planned_as_the_applications_role(dsn: str, tmp_path: Path) -> None:
    owner = _planted(dsn)
    with reader_login(dsn, tmp_path) as reader:
        out = agent19("explain", "--dsn", owner, "--read-dsn", reader, "--no-analyze", "--format", "json",
                      "DELETE FROM public.events WHERE id = 1", env=STRICT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["kind"] == "write"


def test_advise_workload_leaves_the_write_out(dsn: str, tmp_path: Path) -> None:
    need_stat_statements(dsn)
    owner = _planted(dsn)
    with psycopg.connect(owner, autocommit=True) as c:  # the owner's own traffic: the top statements
        for _ in range(5):
            c.execute("DELETE FROM public.events WHERE kind = 'y'")
            c.execute("SELECT * FROM public.events WHERE kind = 'x'")
    with reader_login(dsn, tmp_path) as reader:
        out = agent19("advise-workload", "--dsn", dsn, "--read-dsn", reader, "--format", "json", env=STRICT)
        given = agent19("advise-workload", "--dsn", dsn, "--read-dsn", reader, "--format", "json",
                        "--queries", "DELETE FROM public.events WHERE kind = 'y'", env=STRICT)
    text = out.stdout + out.stderr
    assert "owner code ran" not in text + given.stdout + given.stderr, text
    assert out.returncode == 0, text
    notes = " ".join(json.loads(out.stdout)["notes"])
    assert "left out (not planned as a privileged login): DELETE FROM public.events" in notes, notes
    assert given.returncode == 1 and "planning a write needs the write's privileges" in given.stderr, given.stderr
