"""``ALTER COLUMN … TYPE`` is judged by the type the server resolves, not by the name as written.

Found by a hostile review (r27-k04, r27-k17): a domain ``app.text`` over ``numeric(12,0)`` was taken for
``pg_catalog.text`` ("loses nothing") and every amount was rounded without a confirmation; ``TYPE "char"`` (the
one-byte internal type, not ``char(1)``) cut text to one byte; ``interval DAY``, ``time(0)`` and ``timestamptz(0)``
(a zero or field-mask type modifier the name-based reading lost) dropped parts of every value. Execute mode and
``plan --dsn`` must both see the loss.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import owner_login, run_sql
from tests.test_safety_detect import findings_with_facts

AGENT19 = (sys.executable, "-m", "agent19")

SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.ledger (id int PRIMARY KEY, amount numeric(12,2), t text, v varchar(40), iv interval,
                         tm time, ts timestamptz, tp timestamp, n int8, f float8, tags text[], c "char");
INSERT INTO app.ledger SELECT g, g * 1.37, repeat('long text ', 5) || g, 'v' || g, '1 day 3 hours 42.5 seconds',
                              '12:34:56.789', now(), now(), g, g * 0.5, ARRAY['abcdef'], 'x'
  FROM generate_series(1, 50) g;
CREATE DOMAIN app.text AS numeric(12,0);
CREATE DOMAIN app.money2 AS numeric(14,2);
CREATE DOMAIN app.words AS text;
CREATE DOMAIN app.short AS varchar(3);
CREATE DOMAIN app.shorter AS app.short;
"""

LOSSY = [
    ("amount", "app.text"),           # a domain named like a built-in: numeric(12,0) underneath
    ("amount", 'app."text"'),
    ("t", '"char"'),                  # the one-byte internal type
    ("v", '"char"'),
    ("t", "name"),
    ("iv", "interval DAY"),
    ("iv", "interval HOUR TO MINUTE"),
    ("iv", "interval(0)"),
    ("tm", "time(0)"),
    ("ts", "timestamptz(0)"),
    ("tp", "timestamp(2)"),
    ("ts", "timestamp"),              # the offset is gone: every instant rewritten as the session's wall time
    ("t", "app.short"),
    ("t", "app.shorter"),             # a domain over a domain
    ("tags", "varchar(3)[]"),
    ("tags", "app.short[]"),
    ("n", "int4"),
    ("f", "int8"),
    ("t", "app.nosuchtype"),          # unknown to the server: may narrow
]
KEEPS = [
    ("amount", "app.money2"),         # a domain over a wider numeric
    ("amount", "numeric(14,2)"),
    ("t", "app.words"),
    ("v", "text"),
    ("iv", "interval DAY TO SECOND"),
    ("iv", "interval"),
    ("tm", "time(6)"),
    ("tp", "timestamptz"),
    ("tags", "varchar[]"),
    ("tags", "text"),                 # an array's text form reads back as the same array
    ("c", "text"),
    ("n", "numeric"),
]


_findings = findings_with_facts


@pytest.fixture
def app(dsn: str) -> str:
    login = owner_login(dsn)
    run_sql(login, SCHEMA)
    return login


def test_the_type_the_server_resolves_decides(app: str) -> None:
    lossy = [f"ALTER TABLE app.ledger ALTER COLUMN {c} TYPE {t};" for c, t in LOSSY]
    keeps = [f"ALTER TABLE app.ledger ALTER COLUMN {c} TYPE {t};" for c, t in KEEPS]
    found = {f.statement for f in _findings(app, "\n".join(lossy + keeps)) if f.kind == "alter_column_type"}
    missed = [lossy[i] for i in range(len(lossy)) if i not in found]
    flagged = [keeps[i] for i in range(len(keeps)) if len(lossy) + i in found]
    assert (missed, flagged) == ([], [])


def test_the_reason_names_the_domain_and_its_base_type(app: str) -> None:
    [f] = _findings(app, "ALTER TABLE app.ledger ALTER COLUMN amount TYPE app.text")
    assert "numeric(12,0)" in f.reason and "app.text" in f.reason, f.reason
    assert "measured now: 50 of 50 rows change" in f.reason, f.reason


def test_the_conversion_is_measured_on_the_live_rows_where_cheap(app: str) -> None:
    """Counted, not guessed: every "char" cut, no int8 value out of int4's range (still held: rows can come)."""
    found = _findings(app, 'ALTER TABLE app.ledger ALTER COLUMN t TYPE "char";\n'
                           "ALTER TABLE app.ledger ALTER COLUMN n TYPE int4;\n"
                           "ALTER TABLE app.ledger ALTER COLUMN iv TYPE interval HOUR")
    assert [f.kind for f in found] == ["alter_column_type"] * 3
    assert "measured now: 50 of 50 rows change" in found[0].reason, found[0].reason
    assert "measured now: none of 50 rows changes" in found[1].reason, found[1].reason
    assert "measured now: 50 of 50 rows change" in found[2].reason, found[2].reason


def _agent19(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT19, "--dsn", dsn, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(("column", "new"), [("amount", "app.text"), ("t", '"char"'), ("iv", "interval DAY"),
                                             ("tm", "time(0)"), ("ts", "timestamptz(0)")])
def test_execute_mode_holds_the_lossy_change_and_plan_escalates_it(app: str, column: str, new: str) -> None:
    sql = f"ALTER TABLE app.ledger ALTER COLUMN {column} TYPE {new}"
    with psycopg.connect(app) as c:
        before = c.execute(f"SELECT array_agg({column}::text ORDER BY id) FROM app.ledger").fetchone()[0]
    r = _agent19(app, "--mode", "execute", "sql", sql)
    assert r.returncode != 0 and "alter_column_type" in r.stdout + r.stderr, (r.stdout, r.stderr)
    with psycopg.connect(app) as c:
        after = c.execute(f"SELECT array_agg({column}::text ORDER BY id) FROM app.ledger").fetchone()[0]
    assert after == before
    p = _agent19(app, "plan", "--sql", sql + ";", "--format", "json")
    assert p.returncode in (0, 1), p.stderr
    assert any(e["kind"] == "data_loss" for e in json.loads(p.stdout)["escalations"]), p.stdout


def test_a_human_at_a_terminal_confirms_the_rounding_change_and_it_runs(app: str, tmp_path) -> None:
    """The held change is not a dead end: the destructive path (report, phrase, execution) carries it through."""
    from tests.terminal import at_terminal

    sql = "ALTER TABLE app.ledger ALTER COLUMN amount TYPE app.text"
    status, shown = at_terminal(["confirm", sql, "--mode", "execute", "--dsn", app, "--data-dir", str(tmp_path)],
                                lambda phrase: phrase)
    assert status == 0 and "measured now: 50 of 50 rows change" in shown, shown
    with psycopg.connect(app) as c:
        assert c.execute("SELECT amount::text FROM app.ledger WHERE id = 1").fetchone()[0] == "1"
