"""A lint stopped part-way by an error (a name agent19 cannot write into a fix, a statement nested too deeply) still
writes a complete document on stdout — a CI job that saves it keeps a file its parser reads — that says it stopped
and where: JSON an ``error`` member in place of the summary, SARIF an invocation that did not succeed, text a last
line; stderr and exit status 2 as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent19.errors import InputError
from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint.engine import lint_sql, lint_stream
from agent19.tools.lint import render_json

FIRST = "ALTER TABLE t ADD COLUMN c int;\n"
CAUSES = {
    # the fix (ADD COLUMN IF NOT EXISTS) would write the name, which holds a line break
    "name with a line break": ('ALTER TABLE "a\nb" ADD COLUMN c int;\n', "contains a line break"),
    "nested too deeply": ("SELECT " + "+".join(["1"] * 900) + ";\n", "the statement is nested too deeply"),
}


def _lint(tmp_path: Path, sql: str, fmt: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "m.sql").write_text(sql)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    return subprocess.run([sys.executable, "-m", "agent19", "lint", "m.sql", "--pg-version", "15", "--format", fmt],
                          capture_output=True, text=True, cwd=tmp_path, env=env)


def test_the_library_names_the_statement_the_error_is_about() -> None:
    bad, says = CAUSES["name with a line break"]
    with pytest.raises(InputError, match=f"^line 2: .*{says}") as raised:
        lint_sql(FIRST + bad)
    assert (raised.value.file, raised.value.line) == (None, 2)


@pytest.mark.parametrize("cause", list(CAUSES))
def test_json_is_complete_and_says_where_it_stopped(tmp_path: Path, cause: str) -> None:
    bad, says = CAUSES[cause]
    done = _lint(tmp_path, FIRST + bad + FIRST, "json")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and f"m.sql:2: {'name' if 'break' in says else 'the'}" in done.stderr
    report = json.loads(done.stdout)  # the whole document, not one cut after the first statement
    assert [s["line"] for s in report["statements"]] == [1]
    assert "summary" not in report  # the counts of a lint that did not finish would read as a result
    assert report["error"]["file"] == "m.sql" and report["error"]["line"] == 2
    assert says in report["error"]["message"] and report["error"]["message"].startswith("m.sql:2: ")


def test_sarif_is_complete_and_its_run_did_not_succeed(tmp_path: Path) -> None:
    bad, says = CAUSES["name with a line break"]
    done = _lint(tmp_path, FIRST + bad, "sarif")
    assert done.returncode == 2, done.stderr[-2000:]
    run = json.loads(done.stdout)["runs"][0]
    assert {r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in run["results"]} == {1}
    [invocation] = run["invocations"]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and says in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "m.sql"},
                                                        "region": {"startLine": 2}}


def test_text_ends_with_a_line_saying_it_stopped(tmp_path: Path) -> None:
    bad, says = CAUSES["name with a line break"]
    done = _lint(tmp_path, FIRST + bad, "text")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "m.sql:1: ALTER TABLE t ADD COLUMN c int" in done.stdout
    last = done.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("lint stopped by an error: m.sql:2: ") and says in last
    assert "statements in" not in done.stdout  # no summary of a lint that did not finish


def test_an_error_at_the_first_statement_still_writes_a_document() -> None:
    bad, says = CAUSES["name with a line break"]
    parts: list[str] = []
    with pytest.raises(InputError, match=says):  # the caller still gets the error, after the last part
        for part in render_json(lint_stream([load_text(bad)], pg_version=15)):
            parts.append(part)
    report = json.loads("".join(parts))
    assert report["statements"] == [] and report["error"]["line"] == 1 and report["error"]["file"] is None


def test_the_error_that_stopped_a_text_lint_is_not_hidden_by_the_encoding(tmp_path: Path) -> None:
    """The stop line is agent19's words about the error (not data): where the encoding lacks one of its characters
    it is written with a backslash escape, and stderr says the lint's error, not an encoding error."""
    (tmp_path / "m.sql").write_text(FIRST + 'ALTER TABLE "a\nbé" ADD COLUMN c int;\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    done = subprocess.run([sys.executable, "-m", "agent19", "lint", "m.sql", "--pg-version", "15"],
                          capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot write" not in done.stderr and "Traceback" not in done.stderr
    assert "agent19: error: m.sql:2: name 'public.a\\nb\\xe9' contains a line break" in done.stderr
    last = done.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("lint stopped by an error: m.sql:2: name 'public.a\\nb\\xe9' contains a line break")


@pytest.mark.parametrize("fmt", ["json", "sarif", "text"])
def test_an_error_before_the_first_statement_still_writes_the_document(tmp_path: Path, fmt: str) -> None:
    """A directory whose second file does not parse stops before any statement is linted: `--format json > out`
    keeps a document saying so, not an empty file."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "001_a.sql").write_text(FIRST)
    (tmp_path / "migrations" / "002_b.sql").write_text("SELECT (((;\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    done = subprocess.run([sys.executable, "-m", "agent19", "lint", "migrations", "--pg-version", "15", "--format",
                           fmt], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "migrations/002_b.sql:1:" in done.stderr and "syntax error" in done.stderr
    if fmt == "text":  # no document to complete
        assert done.stdout == ""
        return
    report = json.loads(done.stdout)
    if fmt == "json":
        assert report["statements"] == [] and "summary" not in report
        assert report["error"]["file"] == "migrations/002_b.sql" and report["error"]["line"] == 1
        assert "syntax error" in report["error"]["message"]
    else:
        run = report["runs"][0]
        assert run["results"] == [] and run["invocations"][0]["executionSuccessful"] is False
        [note] = run["invocations"][0]["toolExecutionNotifications"]
        assert "syntax error" in note["message"]["text"]
        assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "migrations/002_b.sql"


BUG = """
import sys
from agent19.migrate.lint import engine
real, seen = engine._statement_report, []
def _statement_report(ctx, findings):
    seen.append(ctx)
    if len(seen) == 2:
        raise KeyError("a bug")
    return real(ctx, findings)
engine._statement_report = _statement_report
from agent19.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_unexpected_error_exits_2_and_names_the_statement(tmp_path: Path) -> None:
    """Exit 1 means "findings" for lint: a bug must not read as one. Its traceback is on stderr, and the document
    says where it stopped."""
    (tmp_path / "m.sql").write_text(FIRST + FIRST.replace(" t ", " u ") + FIRST.replace(" t ", " v "))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    done = subprocess.run([sys.executable, "-c", BUG, "lint", "m.sql", "--pg-version", "15", "--format", "json",
                           "--fail-on", "warning"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" in done.stderr and "KeyError: 'a bug'" in done.stderr
    assert "stopped at the statement at m.sql:2" in done.stderr
    report = json.loads(done.stdout)
    assert [s["line"] for s in report["statements"]] == [1]
    assert (report["error"]["file"], report["error"]["line"]) == ("m.sql", 2)
    assert report["error"]["message"].startswith("m.sql:2: agent19 stopped on an unexpected error (KeyError")
