import pytest

from agent19.errors import InputError
from agent19.migrate.parse import SqlParseError, parse_file, parse_sql

MIGRATION = """-- add a column
BEGIN;
/* why */ ALTER TABLE t ADD COLUMN x int, ALTER COLUMN y SET NOT NULL;

CREATE INDEX CONCURRENTLY i ON t (x); -- trailing
INSERT INTO t VALUES ('é'); SELECT 1
"""


def test_statements_keep_text_line_and_node():
    stmts = parse_sql(MIGRATION, "m.sql")
    assert [(s.line, s.node) for s in stmts] == [
        (2, "TransactionStmt"), (3, "AlterTableStmt"), (5, "IndexStmt"), (6, "InsertStmt"), (6, "SelectStmt")]
    assert stmts[1].sql == "ALTER TABLE t ADD COLUMN x int, ALTER COLUMN y SET NOT NULL"
    assert stmts[3].sql == "INSERT INTO t VALUES ('é')"
    assert stmts[2].fields["concurrent"] is True
    assert all(s.file == "m.sql" for s in stmts)


@pytest.mark.parametrize("text", ["", "   \n", "-- nothing here\n", "/* x */"])
def test_empty_input_is_no_statements(text):
    assert parse_sql(text) == []


def test_syntax_error_names_line_column_and_message():
    with pytest.raises(SqlParseError) as err:
        parse_sql("SELECT 'é';\n  SELEC 2;\n", "m.sql")
    assert err.value.line == 2 and err.value.column == 3
    assert str(err.value).startswith('m.sql:2:3: syntax error: syntax error at or near "SELEC"')


def test_non_utf8_file_is_a_clear_error(tmp_path):
    f = tmp_path / "bad.sql"
    f.write_bytes(b"SELECT 1;\nSELECT '\xff\xfe';\n")
    with pytest.raises(InputError, match=r"bad.sql:2: not UTF-8"):
        parse_file(f)


def test_large_input_parses(tmp_path):
    text = "".join(f"ALTER TABLE t{i} ADD COLUMN c int;\n" for i in range(20000))
    stmts = parse_sql(text)
    assert len(stmts) == 20000 and stmts[-1].line == 20000


UNDECODED = [
    MIGRATION,
    "SELECT 1",  # one statement: no location, no length
    "SELECT '},{\"stmt\":{\"x\"}' ; SELECT '\\\"stmt_len\":9}]}'",  # the separators inside strings
    "CREATE SCHEMA s CREATE TABLE x (a int) CREATE VIEW v AS SELECT a FROM x;  \n\n  SELECT 2  ",
    "-- c\n/* x */ ;; SELECT 1;\n\n;;SELECT 'é';\r\nSELECT $$;$$;",
    "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); DELETE FROM w);\nEXPLAIN SELECT 1;",
    "COPY (SELECT 1) TO STDOUT; PREPARE p AS SELECT 1; DECLARE c CURSOR FOR SELECT 1; CREATE TABLE z AS SELECT 1",
]


@pytest.mark.parametrize("text", UNDECODED)
def test_statements_read_from_json_text_are_the_decoded_ones(text, monkeypatch):
    """Past KEEP_DECODED_CHARS a statement's position, node and tree text are read from pglast's JSON without
    decoding its tree: the same statements, lines and trees as when every tree is decoded."""
    import agent19.migrate.parse as parse

    decoded = parse_sql(text, "m.sql")
    monkeypatch.setattr(parse, "KEEP_DECODED_CHARS", 0)
    undecoded = parse_sql(text, "m.sql")
    assert [s.__dict__["_tree"] for s in undecoded] == [None] * len(decoded)  # none decoded at parse
    assert undecoded == decoded
    assert [(s.tree, s.tree_text) for s in undecoded] == [(s.tree, s.tree_text) for s in decoded]
