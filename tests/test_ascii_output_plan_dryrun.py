"""`agent19 plan` and `agent19 dry-run` text reports in an ASCII encoding: their own words (the deployment line, the
validation arrows, escalations, a dry run's renames and notes, an error's hint) are ASCII, as lint's are, so a
report of ASCII SQL reads the same under PYTHONIOENCODING=ascii as under UTF-8 (it failed with exit 2 on agent19's
own '\u2014' and '\u2192'). A name the encoding cannot spell is still a clear error, never a changed character."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import owner_login, run_sql
from tests.test_cli_output_errors import _agent19


def test_a_text_plan_of_ascii_sql_is_written_in_any_encoding(tmp_path: Path) -> None:
    from tests.corpus import authors_cases, heldout_cases
    from tests.corpus.classify_corpus import CORPUS

    sqls = [sql for sql, *_ in CORPUS] + [sql for *_, sql in authors_cases.CASES] + [
        sql for c in heldout_cases.CASES for sql in (c.sql, *c.files.values()) if sql]
    migration = tmp_path / "all.sql"
    migration.write_text("".join(s if s.rstrip().endswith(";") else s + ";\n" for s in sqls if s.isascii()))
    for version in ("11", "17"):
        args = ("plan", str(migration), "--pg-version", version, "--format", "text")
        ascii_run, utf8_run = (_agent19(tmp_path, *args, PYTHONIOENCODING=e) for e in ("ascii", "utf-8"))
        assert ascii_run.returncode == utf8_run.returncode == 0, ascii_run.stderr
        assert ascii_run.stdout == utf8_run.stdout and "deployment:" in ascii_run.stdout, ascii_run.stderr
        assert " -> " in ascii_run.stdout  # the validation checks' expected values


def test_a_text_dry_run_of_ascii_sql_is_written_in_any_encoding(dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn, "asciidr")
    run_sql(app, "CREATE TABLE victim (id int PRIMARY KEY); CREATE SEQUENCE s; "
                 "CREATE TABLE orders (id int PRIMARY KEY, amount int); "
                 "INSERT INTO orders SELECT generate_series(1, 50), 1")
    migration = tmp_path / "m.sql"
    migration.write_text("ALTER TABLE victim RENAME TO victim2;\nALTER TABLE orders ALTER COLUMN amount TYPE bigint;\n"
                         "SELECT setval('s', 5);\n")
    args = ("dry-run", str(migration), "--dsn", app, "--mode", "dry-run", "--format", "text")
    ascii_run, utf8_run = (_agent19(tmp_path, *args, PYTHONIOENCODING=e) for e in ("ascii", "utf-8"))
    assert ascii_run.returncode == utf8_run.returncode, (ascii_run.stderr, utf8_run.stderr)
    assert "cannot write" not in ascii_run.stderr and "Traceback" not in ascii_run.stderr, ascii_run.stderr
    assert "victim -> " in ascii_run.stdout and "not run: setval()" in ascii_run.stdout, ascii_run.stdout
    assert ascii_run.stdout.isascii(), ascii_run.stdout
    # data the encoding cannot spell: a clear error (exit 2), not a traceback and not a changed name
    run_sql(app, 'CREATE TABLE "tablé" (id int)')
    migration.write_text('ALTER TABLE "tablé" RENAME TO other;\n')
    refused = _agent19(tmp_path, *args, PYTHONIOENCODING="ascii")
    assert refused.returncode == 2 and "cannot write" in refused.stderr and "Traceback" not in refused.stderr, \
        (refused.stdout, refused.stderr)
