"""Fixes built once per statement shape (agent19.migrate.lint.rules._shape) are exactly the fixes built from each
statement's own text, and statements of one shape share one build."""

from __future__ import annotations

import pytest

from agent19.migrate.lint.rules import _shape
from agent19.migrate.lint.rules._base import deparse, typed_tree
from agent19.migrate.lint.rules.non_rerunnable import rerunnable
from agent19.migrate.lint.rules.type_change_rewrite import type_changes
from agent19.migrate.parse import parse_sql

# pairs and runs of one shape with other names, and names the placeholders must not stand for: keywords that need
# quotes, quoted and upper-case names, type, function and option names, partition strategies, a name used twice,
# a name over 63 bytes (PostgreSQL truncates it), comments, string constants
CASES = """
ALTER TABLE t1 ADD COLUMN c1 integer;
ALTER TABLE t2 ADD COLUMN c2 integer;
ALTER TABLE s.t2 ADD COLUMN c2 integer REFERENCES p (id);
ALTER TABLE s.t3 ADD COLUMN c3 integer REFERENCES p (id);
ALTER TABLE t3 ADD COLUMN c3 mytype;
ALTER TABLE t4 ADD COLUMN c4 othertype;
ALTER TABLE t4 ADD COLUMN "user" integer;
ALTER TABLE t5 ADD COLUMN "Mixed" integer;
ALTER TABLE T6 ADD COLUMN Mixed integer;
ALTER TABLE t7 ADD COLUMN t7 integer;
ALTER TABLE t8 ADD COLUMN c8 integer DEFAULT now();
ALTER TABLE t9 ADD COLUMN c9 integer DEFAULT clock_timestamp();
ALTER TABLE t9 ADD COLUMN c9 text DEFAULT 'x' -- note
;
ALTER TABLE t1 DROP COLUMN a, ADD COLUMN b int DEFAULT now();
ALTER TABLE t2 DROP COLUMN a, ADD COLUMN b int DEFAULT nowx();
CREATE TABLE n6 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE n7 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE n8 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body mytype NOT NULL);
CREATE TABLE n8 (id bigint, body text, CONSTRAINT fk FOREIGN KEY (id, body) REFERENCES x (a, b), CHECK (id > 0));
CREATE TABLE n9 (id bigint, body text, CONSTRAINT fk FOREIGN KEY (id, body) REFERENCES x (a, b), CHECK (id > 0));
CREATE TABLE p (a int) PARTITION BY list (a);
CREATE TABLE q (a int) PARTITION BY range (a);
CREATE TABLE r (a int) PARTITION BY hash (a);
CREATE TABLE w (a int) WITH (fillfactor = 70);
CREATE TABLE v (a int) WITH (autovacuum_enabled = off);
CREATE TABLE aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa (a int);
CREATE TABLE bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb (a int);
CREATE INDEX t1_idx ON t1 (a);
CREATE INDEX t2_idx ON t2 (b);
CREATE INDEX t2_idx ON t2 (lower(b));
CREATE INDEX t3_idx ON t3 (upper(b));
CREATE INDEX CONCURRENTLY t1_b_idx ON t1 USING gin (b) WITH (fastupdate = off) WHERE a > 5;
CREATE INDEX CONCURRENTLY t2_b_idx ON t2 USING gist (b) WHERE a > 5;
CREATE INDEX t4_idx ON t4 (b text_pattern_ops);
CREATE INDEX t5_idx ON t5 (b varchar_pattern_ops);
DROP TABLE t1;
DROP TABLE t2, t3;
DROP INDEX t1_idx;
DROP TABLE t1 CASCADE;
ALTER TABLE t1 ALTER COLUMN a TYPE bigint;
ALTER TABLE t2 ALTER COLUMN b TYPE bigint;
ALTER TABLE t3 ALTER COLUMN b TYPE varchar(30), ALTER COLUMN c TYPE numeric(10, 2);
ALTER TABLE t4 ALTER COLUMN b TYPE varchar(30), ALTER COLUMN d TYPE numeric(10, 2);
ALTER TABLE t4 ALTER COLUMN b TYPE text USING b::text;
ALTER TABLE t5 ALTER COLUMN c TYPE text USING c::text;
ALTER TABLE t5 ALTER COLUMN c TYPE mytype USING lower(c)::mytype;
ALTER TABLE t6 ALTER COLUMN d TYPE othertype USING upper(d)::othertype;
ALTER TABLE t7 ALTER COLUMN e TYPE timestamptz USING e AT TIME ZONE 'UTC';
ALTER TABLE t8 ALTER COLUMN f TYPE integer[] USING ARRAY[f];
""".strip()


def _statements():
    return parse_sql(CASES)


@pytest.mark.parametrize("as_text", [False, True])  # the shape checked on the trees, or on their JSON texts
def test_every_fix_is_the_statements_own(as_text):
    _shape._shapes.clear()
    for st in _statements():
        text = st.tree_text if as_text else None
        assert _shape.by_shape(st.sql, st.tree, rerunnable, text) == rerunnable(st.sql), st.sql


@pytest.mark.parametrize("as_text", [False, True])
def test_pieces_built_per_shape_are_the_statements_own(as_text):
    """A builder returning several texts (as a rule deparsing parts of a statement does)."""
    _shape._shapes.clear()
    for st in _statements():
        text = st.tree_text if as_text else None
        assert _shape.by_shape(st.sql, st.tree, _pieces, text) == _pieces(st.sql), st.sql


@pytest.mark.parametrize("as_text", [False, True])
def test_type_changes_built_per_shape_are_the_statements_own(as_text):
    _shape._shapes.clear()
    for st in _statements():
        if st.sql.startswith("ALTER TABLE"):
            text = st.tree_text if as_text else None
            assert _shape.by_shape(st.sql, st.tree, type_changes, text) == type_changes(st.sql), st.sql


@pytest.mark.parametrize("as_text", [False, True])
def test_braces_in_a_built_text_are_written_as_they_are(as_text):
    """Names are written into a shape's cached text with str.format: a brace the builder wrote (``{}``, ``{0}``,
    ``{a19x0q}``) must come back as written, and the names in their places."""
    _shape._shapes.clear()
    for st in _statements():
        text = st.tree_text if as_text else None
        assert _shape.by_shape(st.sql, st.tree, _braced, text) == _braced(st.sql), st.sql
    _shape._by_names.clear()
    for names in (("t1", "a"), ("t2", "b"), ("t2", "t2")):
        assert _shape.by_names(_braced_names, names, "{x}") == _braced_names(names, "{x}")


def _braced(sql: str) -> tuple[str, list[str]]:
    words = [w for w in sql.split() if w.islower()]
    return "{" + sql + "} {0} {}", [f"{{{w}}}}}{{" for w in words]


def _braced_names(names: tuple[str, ...], rest: str) -> str:
    return f"{{{names[0]}}} {{0}} {rest} " + "}{".join(names)


def _pieces(sql: str) -> tuple[str, ...]:
    tree = typed_tree(sql)
    return tuple(deparse(n) for n in (getattr(tree, "relation", None), tree) if n is not None)


def test_one_build_per_shape(monkeypatch):
    _shape._shapes.clear()
    built: list[str] = []

    def build(sql: str) -> str | None:
        built.append(sql)
        return rerunnable(sql)

    sts = parse_sql("".join(f"CREATE INDEX t{i}_idx ON t{i} (a{i});\n" for i in range(50)))
    fixes = [_shape.by_shape(st.sql, st.tree, build) for st in sts]
    assert fixes == [rerunnable(st.sql) for st in sts]
    assert len(built) == 1 and "t0_idx" not in built[0]


@pytest.mark.parametrize("sql", [
    "CREATE TABLE a19x0q (a int)",  # holds the placeholder spelling: built from its own text
    "CREATE TABLE ünï (a int)",
    "CREATE TABLE t (a int DEFAULT 'x''y')",
])
def test_texts_left_as_they_are(sql):
    assert _shape._shape(sql) is None


def test_a_shape_does_not_fit_a_different_tree():
    """The cache is checked against each statement's tree: a tree that differs (here, changed after parsing)
    gets its own build, not the shape's."""
    _shape._shapes.clear()
    a, b = parse_sql("CREATE INDEX t1_idx ON t1 (a); CREATE INDEX t2_idx ON t2 (b);")
    calls: list[str] = []

    def build(sql: str) -> str | None:
        calls.append(sql)
        return rerunnable(sql)

    assert _shape.by_shape(a.sql, a.tree, build) == rerunnable(a.sql) and len(calls) == 1  # the shape's build
    tree = b.tree
    tree["IndexStmt"]["unique"] = True
    assert _shape.by_shape(b.sql, tree, build) == rerunnable(b.sql) and calls[1:] == [b.sql]
    text = b.tree_text.replace('{"IndexStmt":{', '{"IndexStmt":{"unique":true,')  # the tree's text, changed alike
    assert text != b.tree_text and _shape.by_shape(b.sql, tree, build, text) == rerunnable(b.sql)
    assert calls[2:] == [b.sql]
    assert _shape.by_shape(b.sql, b.tree, build, b.tree_text) == rerunnable(b.sql) and len(calls) == 3  # as written



def test_a_shape_fits_a_text_only_with_each_name_in_its_places():
    """Checked on the JSON text, every name must stand where the statement's text puts it, at each of its places:
    a tree naming the column as the table (and the converse), or a name used twice that is another name in one
    place, is another statement and gets its own build; the offsets are all that may differ."""
    _shape._shapes.clear()
    calls: list[str] = []

    def build(sql: str) -> str | None:
        calls.append(sql)
        return rerunnable(sql)

    one, two, same_a, same_b = parse_sql(
        "ALTER TABLE t1 ADD COLUMN c1 integer; ALTER TABLE t22 ADD COLUMN c22 integer;"
        "ALTER TABLE t3 ADD COLUMN t3 integer; ALTER TABLE t44 ADD COLUMN t44 integer;")
    for st in (one, same_a):  # the shapes' builds
        assert _shape.by_shape(st.sql, st.tree, build, st.tree_text) == rerunnable(st.sql)
    assert len(calls) == 2
    assert _shape.by_shape(two.sql, two.tree, build, two.tree_text) == rerunnable(two.sql) and len(calls) == 2
    assert _shape.by_shape(same_b.sql, same_b.tree, build, same_b.tree_text) == rerunnable(same_b.sql)
    assert len(calls) == 2  # both fit as written (two's offsets are not one's)
    swapped = two.tree_text.replace('"t22"', '"x"').replace('"c22"', '"t22"').replace('"x"', '"c22"')
    other = same_b.tree_text.replace('"colname":"t44"', '"colname":"t45"')
    for st, text in ((two, swapped), (same_b, other)):
        assert text != st.tree_text and _shape.by_shape(st.sql, st.tree, build, text) == rerunnable(st.sql)
    assert calls[2:] == [two.sql, same_b.sql]

# (table, column): plain names, a name used twice, a schema, an unreserved keyword, names that need quotes, names
# long enough that a derived trigger or constraint name is cut at 63 bytes (built from their own text then)
NAMED = [("t1", "a"), ("orders", "customer_id"), ("t7", "t7"), ("s.t2", "c2"), ("t3", "name"), ("t4", '"user"'),
         ('"Mixed"', "c"), ("t5", '"Mixed"'), ("a" * 20, "b" * 12), ("a" * 30, "b" * 30), ("s" * 20 + ".t", "c" * 40)]


@pytest.mark.parametrize(("table", "column"), NAMED)
def test_fixes_built_from_names_once_are_the_fixes_built_for_each(table, column):
    from agent19.migrate.lint.rules.set_not_null_scan import not_null_fix
    from agent19.migrate.lint.rules.type_change_rewrite import _fix, shadow_column_fix
    from agent19.migrate.patterns.constraints import not_null_phases
    from agent19.migrate.patterns.model import fix_script
    from agent19.migrate.patterns.sqlnames import parse_name

    col = parse_name(column)[0]
    for major in (11, 15):
        for new_type in ("bigint", "varchar(20)"):
            shadow_column_fix("other", None, major, "x", new_type, None)  # the template for these, built first
            assert shadow_column_fix(table, None, major, col, new_type, None) == _fix(
                table, None, major, col, new_type, None)
        not_null_fix("other", "x", major)
        assert not_null_fix(table, col, major) == fix_script(not_null_phases(table, col, major))
