"""The engine calls a rule only for the statement types it declares (``Rule.nodes``), and for an ALTER TABLE only
with the sub-commands it declares (``Rule.subcommands``). A declaration that left out a type would silently drop
findings: every rule runs here on every statement of the corpora as if it declared none,
and the reports must not change."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint import engine
from agent19.migrate.lint.config import LintConfig
from agent19.migrate.lint.rules import all_rules
from agent19.migrate.parse import parse_sql
from tests.corpus.authors_cases import CASES
from tests.corpus.classify_corpus import CORPUS

# every ALTER TABLE sub-command a rule declares, alone and beside others (test_every_declared_subcommand_is_linted)
ALTERS = [
    "ALTER TABLE t SET TABLESPACE fast;", "ALTER TABLE t SET LOGGED;", "ALTER TABLE t SET UNLOGGED, ADD COLUMN b int;",
    "ALTER TABLE t DETACH PARTITION p;", "ALTER TABLE t ATTACH PARTITION p FOR VALUES FROM (1) TO (2);",
    "ALTER TABLE t ADD CONSTRAINT c EXCLUDE USING gist (a WITH &&), ALTER COLUMN b DROP NOT NULL;",
    "ALTER TABLE t ADD PRIMARY KEY USING INDEX i, DROP COLUMN c;",
    "ALTER TABLE t ALTER COLUMN a TYPE bigint, ALTER COLUMN b SET NOT NULL, ADD UNIQUE (c);",
    "ALTER TABLE t ADD COLUMN d int NOT NULL REFERENCES p (id), ADD CONSTRAINT k CHECK (d > 0);",
]
SQLS = [sql.rstrip(";") + ";" for sql, *_ in CORPUS] + [sql for _, _, sql in CASES] + [
    s for r in all_rules() for s in (r.bad, r.good) if s] + ALTERS


def _reports(version: int) -> list[dict]:
    config = LintConfig(style=True)
    texts = [*SQLS, "\n".join(SQLS)]  # each alone, then all as one migration (what earlier statements did)
    return [asdict(engine.lint([load_text(t)], pg_version=version, config=config)) for t in texts]


@pytest.mark.parametrize("version", [100000, 150000])
def test_declared_statement_types_leave_out_no_finding(monkeypatch, version):
    declared = [r for r in all_rules() if r.nodes]
    assert len(declared) >= 20  # the dispatch is in use
    assert len([r for r in declared if r.subcommands]) >= 10  # and by ALTER TABLE sub-command
    dispatched = _reports(version)
    undeclared = tuple(replace(r, nodes=(), subcommands=()) for r in all_rules())
    monkeypatch.setattr(engine, "all_rules", lambda: undeclared)
    assert _reports(version) == dispatched


def test_every_declared_subcommand_is_linted():
    """The proof above holds for the sub-commands its statements have: each one a rule declares is among them."""
    seen = {cmd["AlterTableCmd"]["subtype"] for st in parse_sql(" ".join(SQLS)) if st.node == "AlterTableStmt"
            for cmd in st.fields.get("cmds", [])}
    declared = {s for r in all_rules() for s in r.subcommands}
    assert declared and declared <= seen, declared - seen


def _chain(ancestors: object) -> list[tuple[str, int, object]]:
    out = []
    while ancestors is not None:
        out.append((type(ancestors.node).__name__, id(ancestors.node), ancestors.member))  # type: ignore[attr-defined]
        ancestors = ancestors.parent  # type: ignore[attr-defined]
    return out


def test_fix_deparse_sets_the_ancestors_pglast_would():
    """Fixes are deparsed by pglast's printers, which read each node's ancestors: set_ancestors must give every
    node the chain pglast.visitors.populate_ancestors gives it."""
    from pglast import parse_sql
    from pglast.visitors import Visitor, populate_ancestors

    from agent19.migrate.lint.rules._base import set_ancestors

    class Nodes(Visitor):
        def __init__(self) -> None:
            self.found: list = []

        def visit(self, ancestors, node):  # noqa: ANN001
            self.found.append(node)

    extra = ["WITH w AS (SELECT 1) INSERT INTO t SELECT * FROM w ON CONFLICT (a) DO UPDATE SET b = excluded.b "
             "RETURNING *", "SELECT a, (SELECT b FROM c WHERE d = ANY (ARRAY[1, 2])) FROM x JOIN y USING (z) "
             "WHERE EXISTS (SELECT 1) ORDER BY 1 LIMIT 3", "VALUES (1, 2), (3, 4)"]
    checked = 0
    for text in [*SQLS, *extra]:
        for raw in parse_sql(text):
            root = (raw.stmt,)  # one tuple: the chains name their containers by identity
            nodes = Nodes()
            nodes(root)
            populate_ancestors(root)
            expected = [_chain(n.ancestors) for n in nodes.found]
            for n in nodes.found:
                n.ancestors = None
            set_ancestors(root)
            assert [_chain(n.ancestors) for n in nodes.found] == expected, text
            checked += len(expected)
    assert checked > 1000
