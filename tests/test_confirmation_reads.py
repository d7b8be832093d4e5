"""The confirmation's impact report reads the catalog with every function, operator and type named
``pg_catalog.``-qualified (review r27b k07).

agent19 trusts the overloads its own login owns (it could call them anyway), but in execute mode a caller can make
such an overload with an earlier ``agent19 sql ... --mode execute`` call (CREATE FUNCTION and CREATE OPERATOR need no
confirmation) and so forge what the next confirmation's report says: the human would confirm "public.big has 0 rows"
for a table of 1,000. The report's reads are READ ONLY (``nextval`` is refused there), so the overloads here show
that they ran by forging the report: an ``=(oid, regclass)`` that makes ``c.oid = to_regclass('big')`` match the empty
table, and a ``||(text, name)`` that names it "big" again. Where a transaction can write (a trial, a confirmed
statement's transaction) they also advance a sequence: ``nextval`` is not undone by a rollback.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.test_cli import agent19

# made by agent19's own login (what earlier execute-mode `sql` calls could make): trusted at session start
FORGERS = """
CREATE SEQUENCE public.ran;
CREATE TABLE public.empty (id int);
CREATE FUNCTION public.ran() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'off' THEN
        PERFORM pg_catalog.nextval('public.ran');
    END IF;
END $$;
CREATE FUNCTION public.is_big(a oid, b regclass) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ran();
    IF b::pg_catalog.oid OPERATOR(pg_catalog.=) 'public.big'::pg_catalog.regclass::pg_catalog.oid THEN
        RETURN a OPERATOR(pg_catalog.=) 'public.empty'::pg_catalog.regclass::pg_catalog.oid;
    END IF;
    RETURN a OPERATOR(pg_catalog.=) b::pg_catalog.oid;
END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.is_big);
CREATE FUNCTION public.named_big(a text, b name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ran();
    IF b::pg_catalog.text OPERATOR(pg_catalog.=) 'empty' THEN
        RETURN a OPERATOR(pg_catalog.||) 'big';
    END IF;
    RETURN a OPERATOR(pg_catalog.||) b::pg_catalog.text;
END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = name, FUNCTION = public.named_big);
""" + "".join(f"""
CREATE FUNCTION public.same_oid(a oid, b {t}) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ran();
    RETURN a OPERATOR(pg_catalog.=) b::pg_catalog.oid;
END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = {t}, FUNCTION = public.same_oid);"""
    for t in ("smallint", "integer")) + """
CREATE FUNCTION public.pg_total_relation_size(a oid) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ran();
    RETURN 0;
END $$;
"""


def _ran(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        last, called = c.execute("SELECT last_value, is_called FROM public.ran").fetchone()
    return int(last) if called else 0


def _report(dsn: str, statement: str, env: dict[str, str]) -> dict:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000) g")
        c.execute(FORGERS)
    out = agent19("sql", statement, "--dsn", dsn, "--mode", "execute", "--format", "json", env=env)
    assert '"executed": false' in out.stdout, out.stdout + out.stderr
    report: dict = json.loads(out.stdout)["confirmation"]["report"]
    return report


@pytest.mark.parametrize("statement, phrase", [
    ("TRUNCATE big", "Confirmed: big has 1000 rows, data is archived/not needed, proceed with truncate."),
    ("DELETE FROM big", "Confirmed: big has 1000 rows, data is archived/not needed, proceed with delete."),
])
def test_the_logins_own_overloads_do_not_forge_the_impact_report(dsn, tmp_path, statement, phrase):
    """Step 1's report, then step 2 (a program approver, operator opt-in): its recount under the lock and its
    ledger run in a transaction that writes, where an overload that ran would have advanced the sequence."""
    env = {"AGENT19_DATA_DIR": str(tmp_path)}
    report = _report(dsn, statement, env)
    (target,) = report["impact"]["targets"]
    assert (target["name"], target["rows"], target["rows_exact"]) == ("public.big", 1000, True), target
    assert target["size_bytes"] > 0, target
    assert report["phrase"] == phrase, report["phrase"]
    assert _ran(dsn) == 0
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM big").fetchone()[0] == 1000
    done = agent19("confirm", statement, "--dsn", dsn, "--mode", "execute", "--allow-model-confirmation",
                   "--token", report["token"], "--phrase", report["phrase"], env=env)
    assert done.returncode == 0 and "outcome: executed" in done.stdout, done.stdout + done.stderr
    assert _ran(dsn) == 0
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM big").fetchone()[0] == 0

