"""change_column_type to a shorter varchar/char/bit refuses values that do not fit, as ALTER TABLE would.

Found by a hostile review of issue 13: the pattern filled the shadow column with ``CAST(col AS varchar(3))``.
An explicit cast cuts a string to the length; ``ALTER COLUMN … TYPE varchar(3)`` (an assignment cast) fails
instead. So the "safe" alternative of a statement that would have failed silently truncated every long value
("u20000" became "u20"), swapped the column in and dropped the original in the contract phase — the lint
fix (A19005) and the runbook's safer alternative with it.
"""

from __future__ import annotations

import psycopg
import pytest

from agent19.migrate.patterns import change_column_type
from agent19.migrate.patterns.live import read_column
from agent19.migrate.patterns.runner import PhaseFailed, run_pattern
from tests.conftest import one, owner_login, run_sql


@pytest.mark.parametrize("new_type", ["varchar(3)", "character(3)", "bit(3)"])
def test_a_value_too_long_stops_the_pattern_and_nothing_is_truncated(dsn: str, new_type: str) -> None:
    app = owner_login(dsn)
    value = "101101" if new_type.startswith("bit") else "abcdef"
    source = "varbit" if new_type.startswith("bit") else "text"
    run_sql(app, f"""CREATE TABLE "order" (id bigint PRIMARY KEY, "user" {source});
                     INSERT INTO "order" SELECT g, CASE WHEN g = 7 THEN '{value}' ELSE '101' END::{source}
                       FROM generate_series(1, 50) g""")
    with psycopg.connect(app, autocommit=True) as conn:
        live = read_column(conn, "order", "user")
        pattern = change_column_type("order", "user", new_type, pg_version=15, live=live)
        with pytest.raises(PhaseFailed):
            run_pattern(conn, pattern, dsn=app)
    # the original column is untouched and still the one in use
    assert one(app, """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                        WHERE attrelid = '"order"'::regclass AND attname = 'user'""") == source.replace("varbit",
                                                                                                        "bit varying")
    assert one(app, """SELECT "user"::text FROM "order" WHERE id = 7""") == value


def test_values_that_fit_are_converted(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, """CREATE TABLE "order" (id bigint PRIMARY KEY, "user" text);
                    INSERT INTO "order" SELECT g, 'u' || (g % 10) FROM generate_series(1, 50) g""")
    with psycopg.connect(app, autocommit=True) as conn:
        pattern = change_column_type("order", "user", "varchar(3)", pg_version=15,
                                     live=read_column(conn, "order", "user"))
        run_pattern(conn, pattern, dsn=app)
    assert one(app, """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                        WHERE attrelid = '"order"'::regclass AND attname = 'user'""") == "character varying(3)"
    assert one(app, """SELECT count(*) FROM "order" WHERE "user" = 'u' || (id % 10)""") == 50


def test_an_explicit_using_is_kept_as_written() -> None:
    p = change_column_type("t", "c", "varchar(3)", using="left(c, 3)", not_null=False, pg_version=15)
    assert "left(c, 3)" in p.to_sql() and "CAST(" not in p.to_sql()
