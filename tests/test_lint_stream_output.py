"""`agent19 lint` writes each statement's report as soon as the statement is linted (agent19.migrate.lint.engine.
lint_stream), in every format, and keeps no report once written: a large migration's memory does not hold its
reports, and the output is the same text as the whole report's. Memory is measured with tracemalloc (bytes
allocated, not timings)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from agent19 import cli
from agent19.migrate.classification import classify as classify_module
from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint.engine import lint, lint_stream
from tests.test_lint_memory import TEMPLATES as MEMORY_TEMPLATES

# test_lint_memory's statements, and a CREATE TABLE (a statement with no finding)
TEMPLATES = (*MEMORY_TEMPLATES,
             "CREATE TABLE n{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body jsonb NOT NULL);")


def _migration(n: int) -> str:
    return "\n".join(TEMPLATES[i % len(TEMPLATES)].format(i=i) for i in range(n)) + "\n"


def test_the_stream_hands_out_each_report_before_the_next_statement_is_linted():
    sql = _migration(30)
    whole = lint([load_text(sql)], pg_version=150000)
    operations: list = []
    stream = lint_stream([load_text(sql)], pg_version=150000, operations=operations)
    assert operations == []  # nothing runs until the reports are read
    first = next(stream.statements)
    assert {o.statement_index for o in operations} == {0}  # the first statement only: classified, linted, handed out
    with pytest.raises(RuntimeError, match="once every statement"):
        stream.summary  # noqa: B018 — not known yet
    rest = list(stream.statements)
    assert [asdict(first), *(asdict(r) for r in rest)] == [asdict(r) for r in whole.statements]
    assert stream.summary == whole.summary and whole.summary.failed and whole.summary.errors > 0


class _Output(io.StringIO):
    """stdout that notes, at each write, how many statements had been classified."""

    def __init__(self, classified: list[int]) -> None:
        super().__init__()
        self.classified, self.writes = classified, []

    def write(self, text: str) -> int:
        self.writes.append((text, len(self.classified)))
        return super().write(text)


@pytest.mark.parametrize(("fmt", "first_statement"), [
    ("json", '"line": 1,'), ("text", "m.sql:1: ALTER TABLE t0"), ("sarif", '"startLine": 1')])
def test_the_cli_writes_the_first_report_before_the_last_statement_is_linted(tmp_path, monkeypatch, fmt,
                                                                            first_statement):
    n = 60
    (tmp_path / "m.sql").write_text(_migration(n))
    monkeypatch.chdir(tmp_path)
    classified: list[int] = []
    real = classify_module.classify

    def counting(statements, **options):
        classified.append(1)
        return real(statements, **options)

    monkeypatch.setattr(classify_module, "classify", counting)
    out = _Output(classified)
    with contextlib.redirect_stdout(out):
        rc = cli.main(["lint", "m.sql", "--pg-version", "15", "--format", fmt])
    assert rc == 1 and len(classified) == n  # an error found: exit 1, decided once the last statement was linted
    at = next(seen for text, seen in out.writes if first_statement in text)
    assert at < n / 2, f"the first statement's report was written after {at} of {n} statements were linted"
    monkeypatch.setattr(classify_module, "classify", real)
    with contextlib.redirect_stdout(io.StringIO()) as whole:
        cli.main(["lint", "m.sql", "--pg-version", "15", "--format", fmt])
    assert out.getvalue() == whole.getvalue()


_PEAK = """
import contextlib, gc, os, sys, tracemalloc
from agent19 import cli
from agent19.migrate import parse
parse.KEEP_DECODED_CHARS = 0  # as in a large file: trees kept as their JSON text
warm, path, fmt = sys.argv[1:]
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
    cli.main(["lint", warm, "--pg-version", "15", "--format", fmt])  # imports and per-process caches first
    gc.collect()
    tracemalloc.start()
    assert cli.main(["lint", path, "--pg-version", "15", "--format", fmt]) == 1
print(tracemalloc.get_traced_memory()[1])
"""


def _peak(warm: str, path: str, fmt: str) -> int:
    """The peak bytes a lint of ``path`` allocates, in a process of its own (as a user runs it: nothing another
    test left in this process counts), after a lint of ``warm``."""
    out = subprocess.run([sys.executable, "-c", _PEAK, warm, path, fmt], capture_output=True, text=True,
                         check=True, timeout=300)
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("fmt", ["json", "text", "sarif"])
def test_a_large_lints_memory_per_statement_is_bounded(tmp_path, fmt):
    small, large = 1000, 3000
    for n in (10, small, large):
        (tmp_path / f"m{n}.sql").write_text(_migration(n))
    warm = str(tmp_path / "m10.sql")
    growth = _peak(warm, str(tmp_path / f"m{large}.sql"), fmt) - _peak(warm, str(tmp_path / f"m{small}.sql"), fmt)
    # ~2.3 kB a statement (its text, its tree's JSON, what later statements' rules read of it); with every report
    # kept until the output was written whole: ~3.7 kB (JSON), ~6 kB (text), ~12 kB (SARIF)
    assert growth / (large - small) < 3000, f"{growth / (large - small):.0f} bytes per linted statement"


def test_a_bad_setting_fails_before_any_statement_is_linted(tmp_path, monkeypatch):
    """No statement's report is written; the JSON document holds only the error (a CI job saving it keeps a file
    its parser reads, as for a lint stopped part-way)."""
    (tmp_path / "m.sql").write_text(_migration(3))
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        rc = cli.main(["lint", "m.sql", "--format", "json", "--disable", "no-such-rule"])
    assert rc == 2 and "unknown lint rule 'no-such-rule'" in err.getvalue()
    report = json.loads(out.getvalue())
    assert report["statements"] == [] and "summary" not in report
    assert "unknown lint rule 'no-such-rule'" in report["error"]["message"]
