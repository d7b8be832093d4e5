"""The fingerprint of the code the server may run covers every source of code the guard reads (hostile review r25,
q12: another session's CREATE STATISTICS on an expression that kills, made while the migration slept, ran in the
migration's ANALYZE; the fingerprint did not include extended statistics, so the dry run PASSED)."""

from __future__ import annotations

import re

import psycopg
import pytest

from agent19.safety.closure_query import Q_CLOSURE
from agent19.safety.fingerprint import CODE
from tests.scratch_dryruns import owner

# catalogs the guard's read joins that hold no code of their own: what they say changes with the rows of the
# catalogs that do (a function's language and extension, a relation's name, a dependency of an object); of
# pg_depend, extension membership is covered (test_extension_membership_changes_the_fingerprint)
NOT_CODE = {"pg_language", "pg_extension", "pg_depend", "pg_class"}


def test_every_catalog_the_guard_reads_code_from_is_in_the_fingerprint():
    read = set(re.findall(r"\b(?:FROM|JOIN)\s+(pg_\w+)", Q_CLOSURE))
    assert {"pg_statistic_ext", "pg_partitioned_table", "pg_aggregate", "pg_attrdef"} <= read, read  # the walk works
    missing = sorted(c for c in read - NOT_CODE if f"FROM pg_catalog.{c} x" not in CODE)
    assert not missing, f"the guard reads code from {missing}, which the fingerprint does not cover"


@pytest.mark.parametrize("change", [
    "CREATE STATISTICS s ON (kf(x)) FROM rt",  # ANALYZE evaluates it
    "CREATE TABLE pt (x int) PARTITION BY RANGE (kf(x))",  # routing a row evaluates it
], ids=["statistics-expression", "partition-key"])
def test_code_another_session_commits_changes_the_fingerprint(dsn, change):
    app = owner(dsn, "CREATE TABLE rt (x int, y int); CREATE FUNCTION kf(int) RETURNS int IMMUTABLE LANGUAGE sql "
                     "AS $$ SELECT $1 $$;")
    with psycopg.connect(app, autocommit=True) as c:
        before = c.execute(f"SELECT {CODE}").fetchone()[0]
        with psycopg.connect(app, autocommit=True) as other:
            other.execute(change)
        assert c.execute(f"SELECT {CODE}").fetchone()[0] != before


def test_extension_membership_changes_the_fingerprint(dsn):
    """``ALTER EXTENSION … DROP/ADD`` writes only pg_depend (kind ``e``): no member's own row changes. The guard
    trusts an extension's members' use of the extension's own C code, so a member added or dropped while a trial
    runs changes which edges it should have followed: the fingerprint must see it."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        before = c.execute(f"SELECT {CODE}").fetchone()[0]
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("ALTER EXTENSION pgcrypto DROP FUNCTION gen_random_bytes(integer)")
        dropped = c.execute(f"SELECT {CODE}").fetchone()[0]
        assert dropped != before
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("ALTER EXTENSION pgcrypto ADD FUNCTION gen_random_bytes(integer)")
        assert c.execute(f"SELECT {CODE}").fetchone()[0] not in (before, dropped)
