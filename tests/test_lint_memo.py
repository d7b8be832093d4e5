"""Pure functions the lint calls many times a statement keep their answers per input (sqlnames.ident and qname,
knowledge.parse_format_type, the parsed type alter.type_of returns): a kept answer must be the one for exactly that
input, whatever was asked before, and an input that cannot be written fails every time."""

from __future__ import annotations

import pytest

from agent19.errors import InputError
from agent19.migrate.classification.alter import type_of
from agent19.migrate.patterns.sqlnames import ident, qname
from agent19.sqltree import parse_json

IDENTS = [("order", '"order"'), ("Order", '"Order"'), ("orders", "orders"), ('we"ird', '"we""ird"'),
          ("a.b", '"a.b"'), ("user", '"user"'), ("users", "users")]
QNAMES = [("public.t", "public.t"), ("public.T", 'public."T"'), ("s.order", 's."order"'), ("order", '"order"'),
          ('s."a.b"', 's."a.b"')]


@pytest.mark.parametrize("order", [1, -1])
def test_names_are_written_for_exactly_what_was_asked(order):
    for _ in range(2):  # the second round reads what the first kept
        for name, written in IDENTS[::order]:
            assert ident(name) == written
        for name, written in QNAMES[::order]:
            assert qname(name) == written


def test_a_name_that_cannot_be_written_fails_every_time():
    for _ in range(2):
        with pytest.raises(InputError, match="line break"):
            ident("a\nb")
        with pytest.raises(InputError, match="line break"):
            qname("s.a\nb")
    with pytest.raises(InputError, match="empty"):
        ident("")


def test_a_type_keeps_its_modifiers_and_array_whatever_was_parsed_before():
    tree = parse_json("CREATE TABLE x (a varchar, b varchar(40), c varchar[], d character varying, e numeric(10, 2), "
                      "f numeric, g int[], h integer)")[0]["stmt"]["CreateStmt"]
    for _ in range(2):
        got = [str(type_of(e["ColumnDef"]["typeName"])) for e in tree["tableElts"]]
        assert got == ["varchar", "varchar(40)", "varchar[]", "varchar", "numeric(10,2)", "numeric", "int4[]", "int4"]


@pytest.mark.parametrize(("name", "written"), [
    ("a1", "a1"), ("_", "_"), ("_1", "_1"), ("1a", '"1a"'), ("aB", '"aB"'), ("a$", '"a$"'), ("é", '"é"'),
    ("ª", '"ª"'), ("a\u212a", '"a\u212a"'), ("select", '"select"'), ("user", '"user"'), ("user_", "user_"),
    ("a b", '"a b"'), ("between", '"between"'), ("names", "names"),
])
def test_a_name_is_quoted_exactly_when_postgresql_needs_it(name, written):
    assert ident(name) == written
    assert qname(f"s.{name}") == f"s.{written}"
