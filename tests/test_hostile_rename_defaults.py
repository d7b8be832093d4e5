"""rename_column keeps old and new code's writes when the column has a default, and reads the live column.

Found by a hostile review of issue 13: the rename's INSERT sync copied one column into the other only
when that one was NULL. A column with a default is never NULL in a BEFORE trigger, so during the
transition an old client's INSERT left the new column at the default (and a new client's INSERT left
the old one at the default): after the contract phase those rows had the default instead of what was
written. Also, `agent19 pattern rename_column` with a database asked for the type and said nothing of
NOT NULL, the default, or the index, CHECK and view that the contract phase's DROP COLUMN drops or
fails on.
"""

from __future__ import annotations

import subprocess
import sys

import psycopg

from agent19.migrate.patterns import rename_column
from agent19.migrate.patterns.live import read_column
from agent19.migrate.patterns.runner import run_phase
from tests.conftest import one, owner_login, run_sql

AGENT19 = (sys.executable, "-m", "agent19")  # the CLI of this checkout, whatever is on PATH

SCHEMA = """
CREATE TABLE "order" (id bigserial PRIMARY KEY, "user" text NOT NULL DEFAULT 'nobody'
                      CHECK (length("user") < 100), amount int);
CREATE INDEX order_user_idx ON "order" ("user");
CREATE VIEW order_users AS SELECT id, "user" FROM "order";
INSERT INTO "order" ("user", amount) SELECT 'u' || g, g FROM generate_series(1, 500) g;
"""


def test_writes_of_old_and_new_code_survive_a_rename_of_a_column_with_a_default(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA.replace("CREATE VIEW order_users AS SELECT id, \"user\" FROM \"order\";", ""))
    with psycopg.connect(app, autocommit=True) as conn:
        live = read_column(conn, "order", "user")
        pattern = rename_column("order", "user", "User Name", pg_version=15, live=live)
        phases = sorted(pattern.phases, key=lambda p: p.order)
        for phase in phases[:-1]:  # expand, backfill, NOT NULL: old and new code run side by side after these
            run_phase(conn, phase, dsn=app)
        conn.execute("""INSERT INTO "order" (id, "user") VALUES (-1, 'old code')""")
        conn.execute("""INSERT INTO "order" (id, "User Name") VALUES (-2, 'new code')""")
        conn.execute("""INSERT INTO "order" (id, amount) VALUES (-3, 0)""")  # neither: the default, in both
        conn.execute("""UPDATE "order" SET "user" = 'old update' WHERE id = 1""")
        conn.execute("""UPDATE "order" SET "User Name" = 'new update' WHERE id = 2""")
        rows = dict(conn.execute("""SELECT id, ("user", "User Name")::text FROM "order" WHERE id IN (-1, -2, -3, 1, 2)
                                 """).fetchall())
        assert rows == {-1: "(\"old code\",\"old code\")", -2: "(\"new code\",\"new code\")",
                        -3: "(nobody,nobody)", 1: "(\"old update\",\"old update\")",
                        2: "(\"new update\",\"new update\")"}, rows
        run_phase(conn, phases[-1], dsn=app)  # contract
    assert one(app, """SELECT "User Name" FROM "order" WHERE id = -1""") == "old code"
    run_sql(app, """INSERT INTO "order" (id) VALUES (-4)""")
    # the default moved to the new column with the contract phase, and NOT NULL came along
    assert one(app, """SELECT "User Name" FROM "order" WHERE id = -4""") == "nobody"
    assert one(app, """SELECT attnotnull FROM pg_attribute WHERE attrelid = '"order"'::regclass
                        AND attname = 'User Name'""") is True


def test_cli_pattern_reads_the_live_column_and_names_what_the_contract_drops(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    r = subprocess.run([*AGENT19, "--dsn", app, "pattern", "rename_column", "order", "--column", "user",
                        "--new-name", "User"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr  # the type comes from the catalog
    out = r.stdout
    assert 'ADD COLUMN "User" text;' in out
    assert "carried over from the live column (text): NOT NULL; the default 'nobody'::text" in out
    for named in ("view order_users", "check order_user_check"):
        assert f"not carried: {named}" in out, out
    assert "carried: index order_user_idx, built on User CONCURRENTLY" in out, out  # the index comes over
    # the default reaches the new column only in the contract phase, where the old one goes
    contract = out[out.index("contract: drop the trigger"):]
    assert "ALTER TABLE \"order\" ALTER COLUMN \"User\" SET DEFAULT 'nobody'::text" in contract
    assert "SET DEFAULT" not in out[:out.index("contract: drop the trigger")]
