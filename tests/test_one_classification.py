"""One source of statement facts: what a statement destroys and what data it loses is said once, in the
knowledge table, and read by safety detection (the confirmation protocol's first filter), the plan and the
runbook.

The tests walk the table itself: every form marked as losing data is caught by safety detection and shown
as data loss in the runbook (its step, its rollback note, its handoff); every form that destroys an object
is caught with that row's kind; and no module outside classification keeps its own list of such kinds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent19.migrate.classification.behaviour import Behaviour
from agent19.migrate.classification.classify import classify, rows_of
from agent19.migrate.classification.knowledge_table import KNOWLEDGE
from agent19.migrate.parse import parse_sql
from agent19.migrate.planning.plan import plan_migration
from agent19.report.build import build_report
from agent19.report.render import documents
from agent19.safety.detect import detect

PACKAGE = Path(__file__).parent.parent / "agent19"
LOSING = [r for r in KNOWLEDGE if r.data_loss]
DESTROYING = [r for r in KNOWLEDGE if r.destroys]


def test_the_table_says_what_loses_data_and_every_such_row_shows_it_on_an_example() -> None:
    assert {r.form for r in LOSING} >= {"drop_table", "truncate", "alter_table.drop_column", "delete",
                                         "drop_schema", "drop_database", "drop_sequence", "drop_materialized_view"}
    for row in LOSING:
        assert row.example, f"{row.form} loses data but has no example to prove it on"
        assert not row.reversible, f"{row.form} loses data, so no SQL can undo it"
    # a row that destroys an object also says which object, and every example classifies as its own row
    for row in DESTROYING + LOSING:
        if row.example:
            assert [r.form for r, _ in rows_of(parse_sql(row.example)[0])] == [row.form], row.example


@pytest.mark.parametrize("row", LOSING, ids=lambda r: r.form)
def test_every_form_that_loses_data_is_caught_by_safety_detection(row: Behaviour) -> None:
    findings = detect(row.example)
    assert findings, f"safety detection lets {row.example!r} through"
    assert any(f.data_loss for f in findings), findings
    if row.destroys:  # caught as the row says, with the data the row says is lost
        assert [f.kind for f in findings] == [row.family]
        assert row.loses in findings[0].reason
        assert findings[0].targets and findings[0].targets[0].kind == row.destroys
    else:  # DELETE: lost rows depend on its reach; the example reaches every row
        assert [f.kind for f in findings] == [f"{row.family}_all"]


@pytest.mark.parametrize("row", LOSING, ids=lambda r: r.form)
def test_every_form_that_loses_data_is_data_loss_in_the_plan_and_the_runbook(row: Behaviour) -> None:
    assert classify(parse_sql(row.example))[0].data_loss
    plan = plan_migration(row.example)
    assert [o.data_loss for o in plan.operations] == [True]
    assert any(e.kind == "data_loss" for e in plan.escalations), plan.escalations
    report = build_report(plan)
    step = report.runbook.steps[0]
    assert step.data_loss and not step.reversible
    assert "backup" in step.rollback_note
    assert [s.data_loss for s in report.handoff.steps] == [True]
    assert report.rollback_plan.steps[0].data_loss
    runbook = documents(report)["runbook.md"] if "runbook.md" in documents(report) else "\n".join(
        documents(report).values())
    assert "backup" in runbook.lower()


@pytest.mark.parametrize("row", [r for r in DESTROYING if r.example], ids=lambda r: r.form)
def test_every_form_that_destroys_an_object_is_caught_with_the_rows_kind(row: Behaviour) -> None:
    findings = detect(row.example)
    assert [(f.kind, f.data_loss) for f in findings] == [(row.family if row.form != "drop_object" else
                                                          "drop_function", row.data_loss)]


def test_a_form_that_neither_destroys_nor_loses_is_not_stopped_by_the_table() -> None:
    quiet = [r for r in KNOWLEDGE if r.example and not r.destroys and not r.data_loss
             and r.category != "data_migration" and r.form not in {"vacuum.full", "cluster"}]
    assert len(quiet) > 40
    for row in quiet:
        stmt = parse_sql(row.example)[0]
        assert not any(r.destroys for r, _ in rows_of(stmt)), row.form


def test_cascade_and_nesting_still_widen_what_is_caught() -> None:
    """Beyond the table: CASCADE turns a definition drop into data loss; nested and hidden DML still count."""
    [typ] = detect("DROP TYPE mood CASCADE")
    assert typ.kind == "drop_type" and typ.data_loss and "CASCADE" in typ.reason
    assert [f.kind for f in detect("WITH gone AS (DELETE FROM child RETURNING id) SELECT count(*) FROM gone")] == [
        "delete_all"]
    assert [f.kind for f in detect("DO $$ BEGIN EXECUTE 'DROP TABLE child'; END $$")] == ["unverifiable"]
    # an ALTER TABLE that adds a column and drops another: the drop is caught, the add is not; findings keep the
    # sub-commands' order; ALTER on any kind of relation (a foreign table here) is classified the same way
    assert [f.kind for f in detect("ALTER TABLE t ADD COLUMN x int, DROP COLUMN note")] == ["drop_column"]
    assert [f.kind for f in detect("ALTER TABLE t ALTER COLUMN v TYPE varchar(2), DROP COLUMN note")] == [
        "alter_column_type", "drop_column"]
    assert [f.kind for f in detect("ALTER FOREIGN TABLE ft DROP COLUMN note")] == ["drop_column"]


def _loss_names() -> set[str]:
    """Every name the table gives a form that loses data: its forms and families."""
    names: set[str] = set()
    for r in LOSING:
        names |= {r.form, r.family}
    return names - {"delete"}  # "delete" is also an ordinary word of the SQL vocabulary (DML kinds)


def _literal_strings(node: ast.AST) -> list[str]:
    return [e.value for e in getattr(node, "elts", []) if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def test_no_module_outside_classification_keeps_its_own_list_of_data_losing_kinds() -> None:
    """A set, list or tuple naming two or more of the table's data-losing forms outside classification is a
    second copy of the table's knowledge (as report/sqlfacts' DATA_LOSS_KINDS, safety/archive's ARCHIVABLE and
    the escalations' drop kinds were). Dicts giving words per kind and type vocabularies (``Literal[...]``)
    describe every kind without judging it, and are allowed."""
    names = _loss_names()
    offenders: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "classification" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        literal_slices = {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)
                          and getattr(n.value, "id", getattr(n.value, "attr", "")) == "Literal"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Set | ast.List | ast.Tuple) or id(node) in literal_slices:
                continue
            hits = sorted(set(_literal_strings(node)) & names)
            if len(hits) >= 2:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {hits}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and "DATA_LOSS_KINDS" in node.id and node.id != "LIVE_DATA_LOSS_KINDS":
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.id}")
    assert not offenders, "lists of data-losing kinds outside the knowledge table:\n" + "\n".join(offenders)


def test_the_live_only_kinds_are_not_forms_of_the_table() -> None:
    """The escalations' own set holds only what the table cannot say: judged on the catalog or unreadable."""
    from agent19.migrate.planning.escalations import LIVE_DATA_LOSS_KINDS

    assert not LIVE_DATA_LOSS_KINDS & _loss_names()
