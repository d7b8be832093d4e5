"""A hostile user's inputs to the streaming lint and its cached fixes (agent19.migrate.lint.rules._shape): the fix
text must be the one built from the statement's own names and types, whatever they are called."""

from __future__ import annotations

import gc

import pytest

from agent19 import cli
from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint.engine import lint_sql, lint_stream
from agent19.migrate.lint.rules import type_change_rewrite


def _fix(sql: str, code: str, pg_version: int = 150000) -> str:
    report = lint_sql(sql, pg_version=pg_version)
    fixes = [f.fix for s in report.statements for f in s.findings if f.rule == code]
    assert fixes, report
    return fixes[0]


def test_a_type_named_like_the_cache_placeholder_stays_that_type_in_the_fix():
    # by_names writes the finding's names into a template built with placeholder names a19x0q, a19x1q…; the new
    # type was written into the template as given, and the names written in replaced it as well
    fix = _fix("ALTER TABLE t ALTER COLUMN c TYPE a19x0q;", "A19005")
    assert "ADD COLUMN c_new a19x0q;" in fix
    assert "CAST(c AS a19x0q)" in fix


@pytest.mark.parametrize("fmt", ["json", "text", "sarif"])
def test_ctrl_c_while_a_fix_is_written_exits_130_as_interrupted(tmp_path, monkeypatch, capsys, fmt):
    # a fix is written when its report is rendered; Ctrl-C landing there (the costliest step of a large lint) was
    # raised inside pydantic's serializer in the JSON format, which turned it into PydanticSerializationError: a
    # traceback and exit 1, which CI reads as "findings", not "interrupted"
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(type_change_rewrite, "shadow_column_fix", interrupted)
    (tmp_path / "m.sql").write_text("ALTER TABLE t ALTER COLUMN c TYPE bigint;\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["lint", "m.sql", "--format", fmt]) == 130
    assert "agent19: interrupted" in capsys.readouterr().err


def test_a_stream_dropped_half_read_puts_the_collector_threshold_back():
    # lint_stream raises the process's gc threshold while it runs (engine._fewer_collections); a caller that stops
    # reading (an error while writing, a break) and drops the stream must not leave it raised for the process
    before = gc.get_threshold()
    stream = lint_stream([load_text("ALTER TABLE t ALTER COLUMN c TYPE bigint;\nCREATE INDEX i ON t (a);\n")])
    next(stream.statements)
    assert gc.get_threshold() != before  # raised while linting
    del stream
    assert gc.get_threshold() == before
