"""The engine calls a rule only for the statement types it declares (``Rule.nodes``). A declaration that left out a
type would silently drop findings: every rule runs here on every statement of the corpora as if it declared none,
and the reports must not change."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint import engine
from agent19.migrate.lint.config import LintConfig
from agent19.migrate.lint.rules import all_rules
from tests.corpus.authors_cases import CASES
from tests.corpus.classify_corpus import CORPUS

SQLS = [sql.rstrip(";") + ";" for sql, *_ in CORPUS] + [sql for _, _, sql in CASES] + [
    s for r in all_rules() for s in (r.bad, r.good) if s]


def _reports(version: int) -> list[dict]:
    config = LintConfig(style=True)
    texts = [*SQLS, "\n".join(SQLS)]  # each alone, then all as one migration (what earlier statements did)
    return [engine.lint([load_text(t)], pg_version=version, config=config).model_dump() for t in texts]


@pytest.mark.parametrize("version", [100000, 150000])
def test_declared_statement_types_leave_out_no_finding(monkeypatch, version):
    declared = [r for r in all_rules() if r.nodes]
    assert len(declared) >= 20  # the dispatch is in use
    dispatched = _reports(version)
    undeclared = tuple(replace(r, nodes=()) for r in all_rules())
    monkeypatch.setattr(engine, "all_rules", lambda: undeclared)
    assert _reports(version) == dispatched
