"""Careless paths given to `agent19 lint`: a file named twice (or beside its directory) is linted once; a
migration whose extension is upper case (V1__x.SQL) is not silently skipped; invalid SQL in the middle of a set
fails with the file and line to fix; empty and comment-only files count as files with no statements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "lint", "--pg-version", "15", *args],
                          capture_output=True, text=True, timeout=120)


def test_careless_paths(tmp_path: Path) -> None:
    d = tmp_path / "db"
    d.mkdir()
    (d / "V1__Ünïcødé drop.SQL").write_text("DROP TABLE legacy;\n")
    (d / "V2__empty.sql").write_text("")
    (d / "V3__comment.sql").write_text("-- nothing yet\n")
    (d / "V4__add.sql").write_text("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN note text;\n")
    run = _lint(str(d), str(d / "V4__add.sql"), str(d / "V4__add.sql"), "--format", "json")
    assert run.returncode == 1, run.stderr  # the DROP TABLE in the .SQL file is an error
    report = json.loads(run.stdout)
    files = [Path(s["file"]).name for s in report["statements"]]
    assert files == ["V1__Ünïcødé drop.SQL", "V4__add.sql", "V4__add.sql"], files  # V4: its two statements, once
    assert report["summary"]["files"] == 4 and report["summary"]["statements"] == 3
    assert report["summary"]["by_rule"].get("A19015") == 1


def test_invalid_sql_mid_set_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "V1__ok.sql").write_text("CREATE TABLE a (id bigint);\n")
    (tmp_path / "V2__bad.sql").write_text("CREATE TABLE b (id bigint);\n\nALTER TABEL b ADD COLUMN c int;\n")
    (tmp_path / "V3__ok.sql").write_text("DROP TABLE users;\n")
    run = _lint(str(tmp_path))
    assert run.returncode == 2 and run.stdout == ""
    assert f"{tmp_path / 'V2__bad.sql'}:3:" in run.stderr and "syntax error" in run.stderr, run.stderr


def test_nothing_to_lint_is_an_error_not_a_pass(tmp_path: Path) -> None:
    """A CI job pointed at the wrong (empty) directory, or at an empty file, must not pass: exit 2, saying so, and
    JSON/SARIF still a whole document (as dry-run says "the migration has no statements")."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "comment.sql").write_text("-- nothing yet\n")
    for path in (tmp_path / "empty", tmp_path / "comment.sql"):
        run = _lint(str(path))
        assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout)
        assert f"no statements found in {path}" in run.stderr, run.stderr
    run = _lint(str(tmp_path / "empty"), "--format", "json")
    assert run.returncode == 2 and "no statements found" in json.loads(run.stdout)["error"]["message"]
    run = _lint(str(tmp_path / "comment.sql"), "--format", "sarif")
    invocation = json.loads(run.stdout)["runs"][0]["invocations"][0]
    assert run.returncode == 2 and invocation["executionSuccessful"] is False
