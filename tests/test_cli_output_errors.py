"""When the output cannot be written — an encoding that cannot spell a character of a report, a full disk — the
command says so and exits 2 (unusable configuration), never with a traceback nor with 1, which for lint means
"problems found", and never by changing a character of data or SQL. JSON and SARIF escape every non-ASCII character
when stdout is not UTF-8, and --help uses ASCII stand-ins (agent19.cli_output): neither needs a UTF-8 terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need


def _agent19(tmp_path: Path, *args: str, stdout: object = subprocess.PIPE,
             **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    environ.update(AGENT19_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run([sys.executable, "-m", "agent19", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          cwd=tmp_path, env=environ, encoding="utf-8")


def _lint(tmp_path: Path, stdout: object, fmt: str = "json", table: str = "tablé",
          **env: str) -> subprocess.CompletedProcess[str]:
    migration = tmp_path / "m.sql"
    migration.write_text(f'ALTER TABLE "{table}" ADD COLUMN c integer;\n', encoding="utf-8")
    return _agent19(tmp_path, "lint", str(migration), "--format", fmt, "--pg-version", "15", stdout=stdout, **env)


def test_an_output_encoding_that_cannot_write_a_name_is_a_clear_error(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.DEVNULL, "text", PYTHONIOENCODING="ascii")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr and "PYTHONIOENCODING=utf-8" in proc.stderr and "'\\xe9'" in proc.stderr


def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    need(os.path.exists("/dev/full"), "needs /dev/full")
    with open("/dev/full", "w") as full:
        proc = _lint(tmp_path, full)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "could not write the output: No space left on device" in proc.stderr


def test_the_same_lint_written_where_it_can_be_is_read_whole(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.PIPE, PYTHONIOENCODING="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert 'tablé' in proc.stdout and proc.stdout.rstrip().endswith("}")


def test_a_text_report_never_changes_a_character_of_data_or_sql(tmp_path: Path) -> None:
    """Runnable SQL written for a table whose name the encoding cannot spell would be SQL for another table."""
    proc = _agent19(tmp_path, "pattern", "rename_column", "orders—2024", "--column", "note", "--type", "text",
                    "--new-name", "note×2", PYTHONIOENCODING="ascii")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # not `ALTER TABLE "orders-2024" …`
    assert "cannot write ('\\u2014')" in proc.stderr and "PYTHONIOENCODING=utf-8" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_text_lint_is_not_changed_either(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.PIPE, "text", table="t×2", PYTHONIOENCODING="ascii")
    assert proc.returncode == 2, proc.stderr
    assert "tx2" not in proc.stdout and "cannot write" in proc.stderr


def test_a_text_lint_of_ascii_sql_is_written_in_any_encoding(tmp_path: Path) -> None:
    """agent19's own words (rule messages, fixes' comments, the summary, rule texts) are ASCII: a text lint of ASCII
    SQL reads the same under PYTHONIOENCODING=ascii as under UTF-8 (it failed with exit 2 on agent19's own '\u2014').
    The statements: the labelled corpus, the cases by hand and the held-out misses, on versions whose messages
    differ (PostgreSQL 11, 14.1: 140001, 17), with the style group; and ``agent19 rules``."""
    from tests.corpus import authors_cases, heldout_cases
    from tests.corpus.classify_corpus import CORPUS

    sqls = [sql for sql, *_ in CORPUS] + [sql for *_, sql in authors_cases.CASES] + [
        sql for c in heldout_cases.CASES for sql in (c.sql, *c.files.values()) if sql]
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for i, sql in enumerate(s for s in sqls if s.isascii()):
        (migrations / f"{i + 1:04d}_case.sql").write_text(sql)
    for version in ("11", "140001", "17"):
        args = ("lint", str(migrations), "--pg-version", version, "--style", "--format", "text")
        ascii_run, utf8_run = (_agent19(tmp_path, *args, PYTHONIOENCODING=e) for e in ("ascii", "utf-8"))
        assert ascii_run.returncode == utf8_run.returncode == 1, ascii_run.stderr  # findings
        assert ascii_run.stdout == utf8_run.stdout and " error(s), " in ascii_run.stdout, ascii_run.stderr
    rules = _agent19(tmp_path, "rules", PYTHONIOENCODING="ascii")
    assert rules.returncode == 0 and "A19001" in rules.stdout, rules.stderr


def test_help_reads_the_same_in_an_ascii_encoding(tmp_path: Path) -> None:
    """agent19's own text only: its typographic characters as ASCII stand-ins."""
    from agent19.cli_output import STAND_INS

    for args in (("--help",), ("lint", "--help")):
        ascii_run = _agent19(tmp_path, *args, PYTHONIOENCODING="ascii")
        utf8_run = _agent19(tmp_path, *args, PYTHONIOENCODING="utf-8")
        assert ascii_run.returncode == utf8_run.returncode == 0, ascii_run.stderr
        assert ascii_run.stdout.isascii() and any(c in utf8_run.stdout for c in STAND_INS)
        assert ascii_run.stdout == utf8_run.stdout.translate(str.maketrans(STAND_INS))


def _lint_bytes(tmp_path: Path, fmt: str, encoding: str) -> bytes:
    (tmp_path / "m.sql").write_text('ALTER TABLE "tablé×" ADD COLUMN c integer;\n', encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    environ.update(AGENT19_DATA_DIR=str(tmp_path / "data"), PYTHONIOENCODING=encoding)
    done = subprocess.run([sys.executable, "-m", "agent19", "lint", "m.sql", "--format", fmt, "--pg-version", "15"],
                          capture_output=True, cwd=tmp_path, env=environ)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "cp1252"])
@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_json_and_sarif_are_utf8_whatever_the_encoding(tmp_path: Path, fmt: str, encoding: str) -> None:
    """Interchange formats are UTF-8: a latin-1 stdout has é but must not write it as the byte 0xe9. Every
    non-ASCII character is JSON's own escape, the same text to any reader."""
    other, utf8 = _lint_bytes(tmp_path, fmt, encoding), _lint_bytes(tmp_path, fmt, "utf-8")
    assert other.isascii() and b"tabl\\u00e9\\u00d7" in other
    assert json.loads(other.decode("utf-8")) == json.loads(utf8.decode("utf-8"))
    assert 'tablé×'.encode() in utf8  # a UTF-8 stdout: written as it is


def _environ(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    environ["AGENT19_DATA_DIR"] = str(tmp_path / "data")
    return environ


@pytest.mark.parametrize("args", [("--help",), ("lint", "--help"), ("--version",)], ids=" ".join)
def test_help_into_a_closed_pipe_or_a_closed_stdout_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    command = [sys.executable, "-m", "agent19", *args]
    reader_gone = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environ(tmp_path))
    reader_gone.stdout.close()  # type: ignore[union-attr]  # before the child writes: `agent19 --help | true`
    err = reader_gone.stderr.read().decode()  # type: ignore[union-attr]
    assert reader_gone.wait() == 141 and err == "", err  # as `agent19 lint | head`
    closed = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=True, text=True,
                            env=_environ(tmp_path))
    assert closed.returncode == 0 and "Traceback" not in closed.stderr, closed.stderr


def test_help_on_a_full_disk_says_so(tmp_path: Path) -> None:
    need(os.path.exists("/dev/full"), "needs /dev/full")
    with open("/dev/full", "w") as full:
        done = _agent19(tmp_path, "--help", stdout=full)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "could not write the output: No space left on device" in done.stderr


def test_a_stopped_lint_says_its_output_could_not_be_written(tmp_path: Path) -> None:
    need(hasattr(__import__("signal"), "SIGXFSZ"), "needs RLIMIT_FSIZE")
    """A lint stopped by an error flushes what it wrote before saying the error: a file-size limit met there is
    said on stderr too, not lost in the interpreter's last flush (the saved document would be cut, unsaid)."""
    import resource
    import signal

    def limit() -> None:  # as `(trap '' XFSZ; ulimit -f 1; agent19 lint … > f.json)`
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    deep = "SELECT " + "+".join(["1"] * 900) + ";\n"
    (tmp_path / "m.sql").write_text("".join(f"ALTER TABLE t{i} ADD COLUMN c int;\n" for i in range(3)) + deep)
    environ = {k: v for k, v in _environ(tmp_path).items() if k != "PYTHONUNBUFFERED"}  # a user's buffered stdout
    with open(tmp_path / "f.json", "w") as out:
        done = subprocess.run([sys.executable, "-m", "agent19", "lint", "m.sql", "--format", "json"], stdout=out,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=environ, preexec_fn=limit)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "could not write the output: File too large" in done.stderr
    assert "m.sql:4: the statement is nested too deeply" in done.stderr  # the lint's own error as well
    assert (tmp_path / "f.json").stat().st_size == 1024
