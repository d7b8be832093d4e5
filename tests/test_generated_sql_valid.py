"""Every statement agent19 writes is valid SQL, for hostile names too, and what is meant to run runs.

Hostile identifiers: reserved words (user, order, select), mixed case, a double quote, spaces, unicode,
schema-qualified names, 63-byte names. Over them and the lint corpora in tests/corpus/:

* the one quoting module agrees with the server's own ``quote_ident()`` and literals read back exactly;
* lint fixes and rollback (inverse) SQL parse with pglast (fixes with ``<placeholders>`` are templates
  whose placeholders need facts a database gives: they must parse once the placeholders are filled);
* every zero-downtime pattern's statements, rollbacks and checks parse, and the patterns run phase by
  phase on a real server on tables with such names, within their declared locks;
* a change list on existing tables named "order" etc. produces SQL that plan_migration parses and
  that runs, in order, on a real server; lint fixes for A19006/A19030 run there too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from pglast import ast, parse_sql
from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS, UNRESERVED_KEYWORDS
from pglast.parser import ParseError
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.migrate import patterns
from agent19.migrate.classification.classify import classify
from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.lint.rules import all_rules
from agent19.migrate.parse import parse_sql as agent19_parse
from agent19.migrate.patterns.indexes import index_name
from agent19.migrate.patterns.model import Pattern
from agent19.migrate.patterns.runner import run_pattern
from agent19.migrate.patterns.sqlnames import ident, literal, qname, qualified, sibling
from agent19.migrate.patterns.sqlnames import short as fit
from agent19.migrate.planning.changes import changes_to_sql
from agent19.migrate.planning.model import Change
from agent19.migrate.planning.plan import plan_migration
from tests.conftest import one, run_sql
from tests.corpus.authors_cases import CASES
from tests.corpus.classify_corpus import CORPUS

NAMES = ["user", "order", "select", "Order", "MixedCase", 'we"ird', "it's", "with space", "café", "名前",
         "x" * 63, "é" * 31 + "z", "values", "int", "a$b", "1st", "plain_name"]
"""Hostile identifiers (raw, as the catalog stores them)."""

RENAME = {"t": "Order Items", "v": "user", "note": "select", "num": 'we"ird', "users": "Users", "orders": "order",
          "c1": "Col One", "id": "ID", "email": "e-mail", "parent": "group", "child": "Kid Table",
          "accounts": "accounts.v2", "some_column": "é" * 31 + "z"}
"""The corpora again, with their tables and columns renamed to hostile names."""

TEMPLATE = re.compile(r"<[^<>\n]{1,60}>")
FILLERS = ("placeholder", "ADD COLUMN placeholder int", "int")
"""What a ``<placeholder>`` of a template fix may stand for: a name or expression, an ALTER sub-command, a type."""
PROSE_FIXES: set[str] = set()
"""Rules whose fix is advice in words (no SQL to write): checked to contain no SQL statement at all. None now."""


def parses(sql: str) -> str | None:
    try:
        parse_sql(sql)
    except ParseError as exc:
        return str(exc)
    return None


def fix_parses(fix: str) -> str | None:
    """None when ``fix`` parses: as statements, or as a template once its placeholders are filled, or (a column
    definition to put in CREATE TABLE) inside a CREATE TABLE."""
    errors = []
    for filler in FILLERS:
        filled = TEMPLATE.sub(filler, fix)
        for text in (filled, f"CREATE TABLE placeholder ({filled.rstrip().rstrip(';')})"):
            if (err := parses(text)) is None:
                return None
            errors.append(err)
    return errors[0]


class _Renamer(Visitor):  # type: ignore[misc]
    def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
        node.relname = RENAME.get(node.relname, node.relname)

    def visit_ColumnDef(self, ancestors: Any, node: ast.ColumnDef) -> None:
        node.colname = RENAME.get(node.colname, node.colname)

    def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
        for f in node.fields:
            if isinstance(f, ast.String):
                f.sval = RENAME.get(f.sval, f.sval)

    def visit_AlterTableCmd(self, ancestors: Any, node: ast.AlterTableCmd) -> None:
        if node.name:
            node.name = RENAME.get(node.name, node.name)

    def visit_IndexElem(self, ancestors: Any, node: ast.IndexElem) -> None:
        if node.name:
            node.name = RENAME.get(node.name, node.name)

    def visit_Constraint(self, ancestors: Any, node: ast.Constraint) -> None:
        for attr in ("keys", "fk_attrs", "pk_attrs", "including"):
            for f in getattr(node, attr) or ():
                if isinstance(f, ast.String):
                    f.sval = RENAME.get(f.sval, f.sval)


def hostile(sql: str) -> str:
    """``sql`` with its tables and columns renamed (deparsed by pglast, so quoted as PostgreSQL needs)."""
    out = []
    for raw in parse_sql(sql):
        _Renamer()(raw.stmt)
        out.append(RawStream()(raw.stmt))
    return ";\n".join(out) + ";"


def corpus() -> Iterator[str]:
    rules = all_rules()
    for sql in [s for s, *_ in CORPUS] + [s for _, _, s in CASES] + [r.bad for r in rules] + [r.good for r in rules]:
        sql = sql if sql.rstrip().endswith(";") else sql + ";"
        yield sql
        yield hostile(sql)


# -- the quoting module -----------------------------------------------------------------------------------

def test_ident_quotes_exactly_as_the_server_does(dsn: str) -> None:
    words = sorted(set(NAMES) | set(RESERVED_KEYWORDS) | set(COL_NAME_KEYWORDS) | set(TYPE_FUNC_NAME_KEYWORDS)
                   | set(list(UNRESERVED_KEYWORDS)[:60]) | {"Z", "_x", "a1", "ÄÖ", 'a""b', "trailing ", "tab\tname"})
    with psycopg.connect(dsn) as conn:
        server = [r[0] for r in conn.execute("SELECT quote_ident(w) FROM unnest(%s::text[]) WITH ORDINALITY AS u(w, i) "
                                             "ORDER BY i", (words,))]
    newer = set(RESERVED_KEYWORDS) | set(COL_NAME_KEYWORDS) | set(TYPE_FUNC_NAME_KEYWORDS)
    # the same as the server; or quoted where this server would not, because a newer PostgreSQL (whose grammar
    # pglast carries, 17) reserves the word — quoting a name never changes it, leaving it bare would break there
    differ = [(w, ident(w), s) for w, s in zip(words, server, strict=True) if ident(w) != s]
    assert all(w in newer and ident(w) == f'"{w}"' for w, _, _ in differ), differ


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_literals_read_back_exactly_whatever_standard_conforming_strings(dsn: str, conforming: str) -> None:
    texts = ["it's", "back\\slash", "\\'", "''", "line\nbreak", "名前 café", "$$", "$agent19$", "--", "/*"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET standard_conforming_strings = {conforming}")
        conn.execute("SET escape_string_warning = off")
        for text in texts:
            assert conn.execute(f"SELECT {literal(text)}").fetchone()[0] == text  # type: ignore[index]


def test_qualified_names_parse_back_to_their_parts() -> None:
    for schema in ("public", "My Schema", "order"):
        for name in NAMES:
            tree = parse_sql(f"SELECT * FROM {qname(f'{schema}.{name}')}")[0].stmt
            rv = tree.fromClause[0]
            assert (rv.schemaname, rv.relname) == (schema, name)


# -- lint fixes and rollback SQL --------------------------------------------------------------------------

@pytest.mark.parametrize("pg_version", [110000, 150000])
def test_every_lint_fix_and_inverse_parses(pg_version: int) -> None:
    failures = []
    for sql in corpus():
        for st in lint_sql(sql, pg_version=pg_version).statements:
            for f in st.findings:
                if not f.fix:
                    continue
                if f.rule in PROSE_FIXES:
                    assert re.search(r"\b(ALTER|CREATE|DROP|UPDATE)\b", f.fix) is None, f.fix
                    continue
                if (err := fix_parses(f.fix)) is not None:
                    failures.append(f"{f.rule} fix for {st.sql!r}: {err}\n{f.fix}")
        for op in classify(agent19_parse(sql), pg_version=pg_version):
            if op.inverse_sql and (err := parses(op.inverse_sql)) is not None:
                failures.append(f"inverse of {op.sql!r}: {err}\n{op.inverse_sql}")
    assert not failures, "\n\n".join(failures[:10])


def test_a19006_and_a19030_fixes_for_reserved_names_run_on_the_server(dsn: str) -> None:
    run_sql(dsn, 'CREATE TABLE "order" (id bigint PRIMARY KEY, "user" text); '
                 "INSERT INTO \"order\" SELECT g, 'u' || g FROM generate_series(1, 20) g")
    fix = next(f.fix for f in lint_sql('ALTER TABLE "order" ALTER COLUMN "user" SET NOT NULL;', pg_version=150000)
               .statements[0].findings if f.rule == "A19006")
    assert fix and 'CHECK ("user" IS NOT NULL)' in fix and 'ALTER COLUMN "user" SET NOT NULL' in fix
    run_sql(dsn, fix)
    assert one(dsn, "SELECT attnotnull FROM pg_attribute WHERE attrelid = '\"order\"'::regclass "
                    "AND attname = 'user'") is True
    assert one(dsn, "SELECT count(*) FROM pg_constraint WHERE conrelid = '\"order\"'::regclass AND contype = 'c'") == 0

    sql = "ALTER TABLE \"order\" ADD CONSTRAINT c CHECK (\"user\" <> ''), ADD COLUMN y int;"
    fix = next(f.fix for f in lint_sql(sql, pg_version=150000).statements[0].findings if f.rule == "A19030")
    assert fix and "ADD CONSTRAINT c CHECK" in fix and "ADD COLUMN IF NOT EXISTS y" in fix, fix
    run_sql(dsn, fix)
    create = next(f.fix for f in lint_sql('CREATE TABLE "User Log" ("select" int);').statements[0].findings
                  if f.rule == "A19030")
    assert create
    run_sql(dsn, create)
    run_sql(dsn, create)  # the point of the fix: it runs again


# -- zero-downtime patterns --------------------------------------------------------------------------------

def _all_sql(p: Pattern) -> Iterator[str]:
    for ph in p.phases:
        for s in ph.operations:
            yield s.sql
            if s.only_if:
                yield s.only_if
        yield from ph.rollback
        if ph.validation:
            yield ph.validation
        if ph.backfill:
            b = ph.backfill
            yield f"UPDATE {qname(b.table)} SET {b.set}" + (f" WHERE {b.where}" if b.where else "")


def _every_pattern(table: str, col: str, other: str, v: int) -> list[Pattern]:
    return [
        patterns.set_not_null(table, col, default="0", pg_version=v),
        patterns.change_column_type(table, col, "bigint", old_type="integer", not_null=True, default="0",
                                    pg_version=v),
        patterns.rename_column(table, col, other, "integer", not_null=True, default="1", pg_version=v),
        patterns.rename_table(table, other, pg_version=v),
        patterns.add_foreign_key(table, [col], f"{table}_parent", ["id"], on_delete="cascade", pg_version=v),
        patterns.add_check(table, other, f"{ident(col)} >= 0", pg_version=v),
        patterns.add_unique(table, [col, "id"], pg_version=v),
        patterns.add_primary_key(table, [col], pg_version=v),
        patterns.create_index(table, [col], where=f"{ident(col)} > 0", pg_version=v),
        patterns.drop_index(f"{table}_{col}_idx", table=table, pg_version=v),
        patterns.reindex(f"{table}_{col}_idx", table=table, definition=f"({ident(col)})", pg_version=v),
        patterns.add_column_volatile_default(table, other, "double precision", "random()", pg_version=v),
    ]


@pytest.mark.parametrize("v", [11, 12, 15])
def test_every_pattern_parses_for_hostile_names(v: int) -> None:
    failures = []
    for schema in (None, "My Schema"):
        for name in NAMES:
            table = f"{schema}.{name}" if schema else name
            for p in _every_pattern(table, name, f"{name}2", v):
                failures += [f"{p.kind} {table!r}: {err}\n{sql}" for sql in _all_sql(p)
                             if (err := parses(sql)) is not None]
                assert parses(p.to_sql()) is None, p.to_sql()
    assert not failures, "\n\n".join(failures[:10])


RUN_CASES = [("My Schema", "order", "user", "select"), (None, 'we"ird', "é" * 31 + "z", "Mixed Case"),
             (None, "名前", "x" * 63, "it's")]


@pytest.mark.parametrize(("schema", "rel", "col", "other"), RUN_CASES)
def test_patterns_run_in_order_on_tables_with_hostile_names(dsn: str, schema: str | None, rel: str, col: str,
                                                            other: str) -> None:
    table = f"{schema}.{rel}" if schema else rel
    t = qname(table)
    parent = qname(f"{table}_parent")
    setup = [f"CREATE SCHEMA {ident(schema)}"] if schema else []
    setup += [f"CREATE TABLE {t} (id bigint PRIMARY KEY, {ident(col)} integer)",
              f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 300) g",
              f"CREATE TABLE {parent} (id bigint PRIMARY KEY)",
              f"INSERT INTO {parent} SELECT g FROM generate_series(1, 300) g"]
    run_sql(dsn, ";\n".join(setup))
    index = sibling(table, index_name(table, [col]))

    def run(p: Pattern, rollback_first: bool = False) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if rollback_first:  # phase 1, then its rollback, must both run
                first = dataclasses.replace(p, phases=[p.phases[0]])
                run_pattern(conn, first, dsn=dsn)
                for sql in p.phases[0].rollback:
                    conn.execute(sql)  # type: ignore[arg-type]
            runs = run_pattern(conn, p, dsn=dsn)
        assert all(r.within_declared for r in runs), [(r.name, r.declared_lock, r.observed_lock) for r in runs]

    steps: list[tuple[Callable[[], Pattern], bool]] = [
        (lambda: patterns.add_check(table, f"{rel} positive", f"{ident(col)} >= 0", pg_version=15), True),
        (lambda: patterns.set_not_null(table, col, pg_version=15), True),
        (lambda: patterns.add_foreign_key(table, [col], f"{table}_parent", ["id"], pg_version=15), True),
        (lambda: patterns.create_index(table, [col], pg_version=15), True),
        (lambda: patterns.reindex(index, table=table, pg_version=15), False),
        (lambda: patterns.drop_index(index, table=table, pg_version=15), False),
        (lambda: patterns.add_unique(table, [col, "id"], pg_version=15), True),
        (lambda: patterns.change_column_type(table, col, "bigint", old_type="integer", not_null=True,
                                             pg_version=15), True),
        (lambda: patterns.rename_column(table, col, other, "bigint", not_null=True, pg_version=15), True),
        (lambda: patterns.add_column_volatile_default(table, "rnd", "double precision", "random()",
                                                      pg_version=15), True),
        (lambda: patterns.rename_table(table, f"{rel} v2", pg_version=15), True),
    ]
    for make, rollback_first in steps:
        run(make(), rollback_first)
    moved = qualified(schema, f"{rel} v2")
    assert one(dsn, f"SELECT count(*) FROM {moved} WHERE {ident(other)} IS NOT NULL") == 300
    assert one(dsn, f"SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull FROM pg_attribute "
                    f"WHERE attrelid = {literal(moved)}::regclass AND attname = {literal(other)}") == "bigint true"


# -- change lists -----------------------------------------------------------------------------------------

CHANGES = [
    {"type": "add_column", "table": "order", "column": {"name": "Total Amount", "type": "numeric(12,2)",
                                                         "nullable": False}},
    {"type": "data_migration", "table": "order", "set": '"Total Amount" = 0', "where": '"Total Amount" IS NULL',
     "batch_size": 7},
    {"type": "add_column", "table": "order", "column": {"name": "select", "type": "text", "default": "'x'"}},
    {"type": "modify_column", "table": "order", "column": {"name": "user", "type": "bigint", "nullable": False},
     "new_type": "bigint"},
    {"type": "add_index", "table": "order", "index_columns": ["user", "select"]},
    {"type": "create_table", "table": "My Schema.Line Item",
     "columns": [{"name": "id", "type": "bigint", "primary_key": True},
                 {"name": "order", "type": "bigint", "nullable": False},
                 {"name": "é" * 31 + "z", "type": "text"}]},
    {"type": "add_foreign_key", "table": "My Schema.Line Item", "index_columns": ["order"],
     "references_table": "order", "references_columns": ["id"], "on_delete": "cascade"},
    {"type": "add_foreign_key", "table": "order", "index_columns": ["user"], "references_table": "group"},
    {"type": "add_not_null", "table": "group", "column": {"name": "Name", "type": "text"}},
    {"type": "rename", "table": "order", "column": {"name": "legacy", "type": "text"}, "new_name": "it's old"},
    {"type": "drop_column", "table": "group", "column": {"name": "we\"ird", "type": "text"}},
]
EXISTING = """
CREATE SCHEMA "My Schema";
CREATE TABLE "group" (id bigint PRIMARY KEY, "Name" text, "we""ird" text);
INSERT INTO "group" SELECT g, 'g' || g, 'w' FROM generate_series(1, 40) g;
CREATE TABLE "order" (id bigint PRIMARY KEY, "user" integer, legacy text);
INSERT INTO "order" SELECT g, 1 + g % 40, 'l' FROM generate_series(1, 100) g;
"""


def test_a_change_list_on_tables_named_order_and_group_plans_and_runs_in_order(dsn: str) -> None:
    run_sql(dsn, EXISTING)
    changes = [Change.model_validate(c) for c in CHANGES]
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    for cat in (None, catalog):
        plan = plan_migration(changes=changes, catalog=cat)
        assert plan.operations
        for op in plan.operations:
            assert parses(op.sql) is None, op.sql
            if op.reverse_sql:
                assert parses(op.reverse_sql) is None, op.reverse_sql
    ordered, groups = changes_to_sql(changes, 15, catalog)
    assert any("CREATE OR REPLACE PROCEDURE" in s for g in groups for s in g)  # keyset backfill, not a DO loop
    assert not any("ctid" in s for g in groups for s in g)
    steps = [c.type for c in ordered]
    assert steps.index("data_migration") < steps.index("add_not_null")  # NOT NULL after the backfill
    with psycopg.connect(dsn, autocommit=True) as conn:
        for group in groups:
            for sql in group:
                conn.execute(sql)  # type: ignore[arg-type]
    assert one(dsn, 'SELECT count(*) FROM "order" WHERE "Total Amount" = 0') == 100
    assert one(dsn, "SELECT string_agg(attname || ':' || attnotnull, ',' ORDER BY attname) FROM pg_attribute "
                    "WHERE attrelid = '\"order\"'::regclass AND attname IN ('Total Amount', 'user')") == \
        "Total Amount:true,user:true"
    assert one(dsn, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated") == 0
    assert one(dsn, "SELECT count(*) FROM pg_attribute WHERE attrelid = '\"order\"'::regclass "
                    "AND attname = 'it''s old'") == 1


@pytest.mark.parametrize("pg_major", [11, 15])
def test_change_list_sql_parses_for_every_hostile_name(pg_major: int) -> None:
    failures = []
    for name in NAMES:
        for table in (name, f"My Schema.{name}"):
            col = {"name": name, "type": "integer", "nullable": False}
            # three lists: a list may not rename and retype one column, nor rename a table it changes by a pattern
            for listed in ([
                {"type": "add_column", "table": table, "column": col},
                {"type": "modify_column", "table": table, "column": col, "new_type": "bigint"},
                {"type": "data_migration", "table": table, "set": f"{ident(name)} = 1", "where": f"{ident(name)} < 0"},
                {"type": "add_index", "table": table, "index_columns": [name], "unique": True},
                {"type": "add_foreign_key", "table": table, "index_columns": [name], "references_table": table},
                {"type": "drop_column", "table": table, "column": col},
                {"type": "create_table", "table": f"{table} new", "columns": [
                    {"name": name, "type": "bigint", "primary_key": True}, col | {"name": f"{name}x"}]},
            ], [{"type": "rename", "table": table, "column": col, "new_name": f"{name} 2"}],
               [{"type": "rename", "table": table, "new_name": f"{name} 3"}]):
                changes = [Change.model_validate(c) for c in listed]
                _, groups = changes_to_sql(changes, pg_major)
                failures += [f"{table!r}: {err}\n{sql}" for g in groups for sql in g
                             if (err := parses(sql)) is not None]
                plan = plan_migration(changes=changes)  # parses and lints its own output
                failures += [f"rollback {table!r}: {err}\n{o.reverse_sql}" for o in plan.operations
                             if o.reverse_sql and (err := parses(o.reverse_sql)) is not None]
    assert not failures, "\n\n".join(failures[:10])


# -- lint fixes built from the patterns and syntax trees, for hostile names ---------------------------------

TABLES = [*NAMES, "a.b", "My Schema.order", "My Schema.a.b"]
"""Tables for the fix tests: NAMES, a name with a dot, and schema-qualified ones (the last dot is the schema's)."""


def _qualified(table: str) -> str:
    return qualified("My Schema", table.removeprefix("My Schema.")) if table.startswith("My Schema.") \
        else ident(table)


def _fix_statements(table: str, col: str) -> dict[str, str]:
    t, c, c2 = _qualified(table), ident(col), ident(fit(col, "2"))
    return {
        "A19005": f"ALTER TABLE {t} ALTER COLUMN {c} TYPE bigint USING {c}::bigint;",
        "A19007": f"ALTER TABLE {t} ADD COLUMN {c2} int, ADD CONSTRAINT {c} CHECK ({c} > 0), "
                  f"ADD FOREIGN KEY ({c}) REFERENCES {t};",
        "A19009": f"ALTER TABLE {t} ATTACH PARTITION {c2} FOR VALUES FROM (1) TO (10);",
        "A19013": f"ALTER TABLE {t} RENAME COLUMN {c} TO {c2};\nALTER TABLE {t} RENAME TO {c2};\n"
                  f"ALTER TABLE {t} SET SCHEMA {c2};",
        "A19021": f"ALTER TABLE {t} ADD COLUMN {c} text NOT NULL, ADD COLUMN {c2} int;\n"
                  f"ALTER TABLE {t} ADD COLUMN {c2} bigint PRIMARY KEY;",
        "A19022": f"CREATE TABLE {t} ({c} serial PRIMARY KEY, {c2} int);",
        "A19023": f"CREATE TABLE {t} ({c} json, {c2} json[]);",
        "A19024": f"ALTER TABLE {t} ADD COLUMN {c} text;\nALTER TABLE {t} ADD COLUMN {c2} text;",
        "A19018": f"UPDATE {t} SET {c} = {c} + 1, {c2} = 'x';",
        "A19006": f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL;",
    }


@pytest.mark.parametrize("pg_version", [110000, 150000])
def test_fixes_built_from_patterns_parse_for_every_hostile_name(pg_version: int) -> None:
    failures = []
    for table in TABLES:
        for col in NAMES:
            for rule, sql in _fix_statements(table, col).items():
                fixes = [f.fix for st in lint_sql(sql, pg_version=pg_version).statements for f in st.findings
                         if f.rule == rule]
                if not fixes or not all(fixes):
                    failures.append(f"{rule} gave no fix for {sql!r}")
                failures += [f"{rule} fix for {sql!r}: {err}\n{fix}" for fix in fixes
                             if fix and (err := fix_parses(fix)) is not None]
    assert not failures, "\n\n".join(failures[:10])


FIX_RUN_CASES = [("My Schema", "order", "user"), (None, "a.b", "Mixed Case"), (None, "x" * 63, "é" * 31 + "z"),
                 ("My Schema", 'we"ird', "select")]


@pytest.mark.parametrize(("schema", "rel", "col"), FIX_RUN_CASES)
def test_fixes_with_a_catalog_run_in_order_on_tables_with_hostile_names(dsn: str, schema: str | None, rel: str,
                                                                        col: str) -> None:
    """With the database known, the fixes hold no placeholder, and each runs, in order, on the real server."""
    t, c, new = qualified(schema, rel), ident(col), fit(col, " 2")
    part, parent = qualified(schema, fit(rel, " p")), qualified(schema, fit(rel, " parent"))
    setup = [f"CREATE SCHEMA {ident(schema)}"] if schema else []
    setup += [f"CREATE TABLE {t} (id bigint PRIMARY KEY, {c} integer NOT NULL DEFAULT 1, k int)",
              f"INSERT INTO {t} SELECT g, g, g % 9 + 1 FROM generate_series(1, 250) g",
              f"CREATE TABLE {parent} (k int NOT NULL, v int) PARTITION BY RANGE (k)",
              f"CREATE TABLE {part} (k int NOT NULL, v int)", f"INSERT INTO {part} SELECT g % 9 + 1, g FROM "
              "generate_series(1, 100) g"]
    run_sql(dsn, ";\n".join(setup))
    statements = [
        ("A19005", f"ALTER TABLE {t} ALTER COLUMN {c} TYPE bigint;"),
        ("A19007", f"ALTER TABLE {t} ADD COLUMN extra int, ADD CONSTRAINT {ident(fit(col, ' pos'))} CHECK ({c} > 0), "
                   f"ADD FOREIGN KEY (id) REFERENCES {t};"),
        ("A19009", f"ALTER TABLE {parent} ATTACH PARTITION {part} FOR VALUES FROM (1) TO (10);"),
        ("A19018", f"UPDATE {t} SET k = k + 1, {c} = {c} * 2;"),
        ("A19006", f"ALTER TABLE {t} ALTER COLUMN k SET NOT NULL;"),
        ("A19013", f"ALTER TABLE {t} RENAME COLUMN {c} TO {ident(new)};"),
    ]
    for rule, sql in statements:
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            catalog = snapshot(conn)
        fix = next(f.fix for st in lint_sql(sql, catalog=catalog, pg_version=150000).statements
                   for f in st.findings if f.rule == rule)
        assert fix and not re.search(r"<[a-z][a-z ]*[a-z]>", "\n".join(
            x for x in fix.splitlines() if not x.startswith("--"))), fix
        if rule == "A19013":  # its backfill (phase 2) names agent19 backfill: run the same UPDATE there
            expand, _, rest = fix.partition("-- 3. ")
            _run_statements(dsn, expand)
            run_sql(dsn, f"UPDATE {t} SET {ident(new)} = {c}")
            _run_statements(dsn, "-- 3. " + rest)
        else:
            _run_statements(dsn, fix)
    assert one(dsn, f"SELECT count(*) FROM {t} WHERE {ident(new)} = id * 2 AND k = id % 9 + 2") == 250
    assert one(dsn, f"SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull FROM pg_attribute "
                    f"WHERE attrelid = {literal(t)}::regclass AND attname = {literal(new)}") == "bigint true"
    assert one(dsn, f"SELECT count(*) FROM pg_constraint WHERE conrelid = {literal(t)}::regclass "
                    "AND NOT convalidated") == 0
    assert one(dsn, f"SELECT count(*) FROM pg_inherits WHERE inhrelid = {literal(part)}::regclass") == 1
    assert one(dsn, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'agent19_backfill_%'") == 0
    assert one(dsn, f"SELECT attnotnull FROM pg_attribute WHERE attrelid = {literal(t)}::regclass "
                    "AND attname = 'k'") is True


def _run_statements(dsn: str, script: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for st in agent19_parse(script):
            conn.execute(st.sql)  # type: ignore[arg-type]

