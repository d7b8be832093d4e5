"""Every other command's text report in an ASCII encoding, as lint's, plan's and dry-run's: agent19's own words
(a dash, an arrow, >=, x, an ellipsis in a fix's SQL) are ASCII, so a report of ASCII data reads the same under
PYTHONIOENCODING=ascii as under UTF-8, with the command's own exit code. Found by review r25c N6: `agent19 check`
printed nothing and exited 2 ("cannot write '\\u2014'") instead of 1 for a failing check; health, info, describe,
assess, capacity, pgbouncer config, runbook, backup status and confirm did the same. Data the encoding cannot
spell (a table named "tablé") is still a clear error, exit 2, never a changed name.

Each command runs as a user runs it (``python -m agent19``), as the database's owner login (an application role)
where the command takes one. Timings and timestamps differ between two runs: stdouts are compared with every
number masked. pgbouncer status and replication against a standby are covered in tests/test_pgbouncer.py and
tests/test_ops_replication.py, where their machinery is built."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import _fresh_database, owner_login, run_sql
from tests.test_cli_output_errors import _agent19

ROOT = Path(__file__).parent.parent
SHOP = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id bigint REFERENCES customers,
                     amount int, note text, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers SELECT g, 'c' || g || '@example.org' FROM generate_series(1, 200) g;
INSERT INTO orders (customer_id, amount, note)
  SELECT 1 + g % 200, g % 100, CASE WHEN g % 10 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 20000) g;
CREATE INDEX orders_amount ON orders (amount);
CREATE INDEX orders_amount_again ON orders (amount);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 50;
ANALYZE customers; ANALYZE orders;
"""
CHECKS = """\
tables:
  orders:
    checks:
      - {name: no_orphans, check: orphans, columns: customer_id, references_table: customers, references_columns: id}
      - {name: notes_present, check: missing_count, column: note, fail: "> 0"}
      - {name: amount_sum, check: sum, column: amount, warn: "<= 0 or >= 10000000"}
"""


def _masked(text: str) -> str:
    """``text`` with each number (a timing, a timestamp, a count that moved, a random directory's hex name) and each
    confirmation token as one stand-in: what is left, every word of the report, must be the same in both encodings."""
    text = re.sub(r"\b[0-9a-f]{8,}\b", "0", re.sub(r"a19\.[\w.-]+", "a19.TOKEN", text))
    return re.sub(r"\d[\w,.:]*", "0", text)


def same_in_ascii(tmp_path: Path, *args: str, code: int | None, moving: str = "^$", **env: str) -> str:
    """Run ``agent19 *args`` under PYTHONIOENCODING=ascii and =utf-8; both exit ``code`` (None: the same 0 or 1, for
    a command whose verdict depends on the shared server's state), neither says "cannot write" nor shows a
    traceback, and the stdouts are the same ASCII text but for lines matching ``moving`` (data that changes between
    two runs: the statements pg_stat_statements has seen). Returns it."""
    ascii_run, utf8_run = (_agent19(tmp_path, *args, PYTHONIOENCODING=e, **env) for e in ("ascii", "utf-8"))
    said = (f"agent19 {' '.join(args)}: exit {ascii_run.returncode} (ascii), {utf8_run.returncode} (utf-8); stderr "
            f"{ascii_run.stderr[-3000:]!r}, {utf8_run.stderr[-3000:]!r}")
    assert "cannot write" not in ascii_run.stderr and "Traceback" not in ascii_run.stderr, said
    assert ascii_run.returncode == utf8_run.returncode, said
    assert ascii_run.returncode == code if code is not None else ascii_run.returncode in (0, 1), said
    assert ascii_run.stdout.strip() and ascii_run.stdout.isascii(), ascii_run.stdout
    kept = [[line for line in _masked(r.stdout).splitlines() if not re.search(moving, line)]
            for r in (ascii_run, utf8_run)]
    assert kept[0] == kept[1], (ascii_run.stdout, utf8_run.stdout)
    return ascii_run.stdout


def only_in_ascii(tmp_path: Path, *args: str, code: int, **env: str) -> str:
    """A command that changes what it reports on (a load, a capture) runs once, under PYTHONIOENCODING=ascii: its
    own exit code, ASCII stdout, no "cannot write", no traceback."""
    run = _agent19(tmp_path, *args, PYTHONIOENCODING="ascii", **env)
    assert "cannot write" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert run.returncode == code, (run.stdout, run.stderr)
    assert run.stdout.strip() and run.stdout.isascii(), run.stdout
    return run.stdout


def test_reports_of_ascii_data_are_written_in_any_encoding(dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn, "asciiops")
    run_sql(app, SHOP)
    # the visibility map settled now, not by autovacuum between two runs of one command: the advisor's index-only
    # scan costs (a covering index or a plain one) depend on it, and both runs must see the same tables
    run_sql(app, "VACUUM (ANALYZE) customers, orders")
    (tmp_path / "checks.yml").write_text(CHECKS)
    (tmp_path / "m.sql").write_text("ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new';\n"
                                    "CREATE INDEX orders_status ON orders (status);\n"
                                    "ALTER TABLE orders ALTER COLUMN amount TYPE bigint;\n")
    env = {"DATABASE_URL": app}
    check = same_in_ascii(tmp_path, "check", "checks.yml", code=1, **env)  # a failing check: 1, not 2
    assert "FAIL" in check.upper() and "notes_present" in check and " - " in check, check
    same_in_ascii(tmp_path, "check", "--suggest", "orders", code=0, **env)
    assert "<- " in same_in_ascii(tmp_path, "describe", code=0, **env)  # a view and what it depends on
    for args in (("info",), ("replication",), ("pgbouncer", "config"), ("setup-role",), ("prisma-schema",),
                 ("capacity", "sample"), ("sql", "SELECT count(*) FROM orders"),
                 ("pattern", "set_not_null", "orders", "--column", "note")):
        same_in_ascii(tmp_path, *args, code=0, **env)
    # before pg_stat_statements is readable here: its statements (other databases' too) move between two runs
    assert "measure first - " in same_in_ascii(tmp_path, "assess", "--window", "1", code=0, **env)
    run_sql(dsn, "CREATE EXTENSION pg_stat_statements")  # capacity and advise-workload read it (not the owner's to)
    statements = r"^\| `|^  +[0-9,.]+ +[0-9,.]+  "  # a statement's line: the runs themselves add statements
    plan = same_in_ascii(tmp_path, "capacity", "--window", "1", code=0, moving=statements, **env)
    assert "mean + 1.645 sigma" in plan, plan
    same_in_ascii(tmp_path, "advise-workload", code=0, moving=statements, **env)
    same_in_ascii(tmp_path, "health", code=None, **env)
    # a sequential scan that filters out most rows: a diagnostic, exit 1
    same_in_ascii(tmp_path, "explain", "SELECT * FROM orders WHERE note = 'x' ORDER BY created_at", code=1, **env)
    same_in_ascii(tmp_path, "index-health", code=1, **env)  # the duplicate index
    advice = same_in_ascii(tmp_path, "advise", "SELECT * FROM orders WHERE customer_id = 5", "--mode", "dry-run",
                           code=0, **env)
    assert "recommend: CREATE INDEX" in advice and " -> " in advice, advice  # cost before -> after
    runbook = same_in_ascii(tmp_path, "runbook", "m.sql", code=0, **env)  # the runbook's Markdown on stdout
    assert "| Downtime | yes - blocks" in runbook and "[ok] satisfied" in runbook, runbook
    assert " - " in same_in_ascii(tmp_path, "confirm", "DROP TABLE orders", code=0, **env)
    same_in_ascii(tmp_path, "backup", "status", code=1, **env)  # no backup known
    assert "# Restore runbook - " in same_in_ascii(tmp_path, "backup", "runbook", code=0, **env)
    verified = same_in_ascii(tmp_path, "backup", "verify", "--mode", "dry-run", code=0, **env)
    assert "public.orders: 20000 -> 20000 rows" in verified and "(the database; x" in verified, verified
    (tmp_path / "V1.up.sql").write_text("ALTER TABLE customers ADD COLUMN nick text;\n")
    (tmp_path / "V1.down.sql").write_text("ALTER TABLE customers DROP COLUMN nick;\n")
    same_in_ascii(tmp_path, "rollback-check", "V1.up.sql", "V1.down.sql", "--mode", "dry-run", code=0, **env)
    same_in_ascii(tmp_path, "rules", "--format", "markdown", code=0)  # every rule's text (A19049's had a dash)
    filled = only_in_ascii(tmp_path, "backfill", "orders", "--set", "note = 'n'", "--where", "note IS NULL",
                           "--mode", "execute", code=0, **env)
    assert "2,000 rows updated" in filled, filled
    # data the encoding cannot spell: the clear error, not a traceback and not a changed name
    run_sql(app, 'CREATE TABLE "tablé" (id int, note text); INSERT INTO "tablé" VALUES (1, NULL)')
    (tmp_path / "checks.yml").write_text('tables:\n  "tablé":\n    checks:\n'
                                         '      - {name: n, check: missing_count, column: note, fail: "> 0"}\n')
    refused = _agent19(tmp_path, "check", "checks.yml", PYTHONIOENCODING="ascii", **env)
    assert refused.returncode == 2 and "cannot write" in refused.stderr and "Traceback" not in refused.stderr, \
        (refused.stdout, refused.stderr)


def test_etl_and_cdc_reports_are_written_in_any_encoding(pg, dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn, "asciietl")
    shop = (ROOT / "examples" / "etl" / "shop.sql").read_text()
    run_sql(app, shop)
    pipeline = str(ROOT / "examples" / "etl" / "orders.toml")
    dry = same_in_ascii(tmp_path, "etl", "run", pipeline, "--dry-run", code=0, DATABASE_URL=app)
    assert "dry run of orders -> analytics.orders" in dry and "none (first run) -> " in dry, dry
    loaded = only_in_ascii(tmp_path, "etl", "run", pipeline, "--mode", "execute", code=0, DATABASE_URL=app)
    assert "rejected 2 -> agent19_etl.dead_letter" in loaded, loaded
    # change data capture: readiness as the owner login, a capture as the superuser (a login that may replicate)
    run_sql(app, "CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE events (a int, b text); "
                 "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 20) g")
    ready = same_in_ascii(tmp_path, "cdc", "check", "items", "events", code=1, DATABASE_URL=app)
    assert "REPLICA IDENTITY FULL" in ready, ready
    debezium = same_in_ascii(tmp_path, "cdc", "debezium", "public.items", "--topic-prefix", "shop", code=1,
                             DATABASE_URL=app)  # not ready: the owner login may not replicate
    assert "REPLICATION" in debezium, debezium
    run_sql(app, "ALTER TABLE events REPLICA IDENTITY FULL")
    warehouse_gen = _fresh_database(pg)
    warehouse = next(warehouse_gen)
    try:
        run_sql(warehouse, "CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE events (a int, b text)")
        capture = ("cdc", "run", "items", "events", "--destination", "env:WAREHOUSE_URL", "--slot", "agent19_ascii",
                   "--mode", "execute")
        first = only_in_ascii(tmp_path, *capture, code=0, DATABASE_URL=dsn, WAREHOUSE_URL=warehouse)
        assert "public.items" in first, first
        only_in_ascii(tmp_path, *capture, "--teardown", code=0, DATABASE_URL=dsn, WAREHOUSE_URL=warehouse)
    finally:
        run_sql(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = 'agent19_ascii'")
        warehouse_gen.close()


# Non-ASCII characters in string literals that are not a report's words: --help is written with stand-ins
# (cli_output.STAND_INS); the MCP server's title, a response's cut mark and a schema brief's ellipsis are MCP-only
# (never a CLI report); the closure query's SQL comment goes to the server, not to a person.
NOT_REPORT_WORDS = {"agent19/cli_output.py", "agent19/cli_parser.py", "agent19/server.py", "agent19/responses.py",
                    "agent19/safety/closure_query.py"}
MCP_ONLY = {("agent19/tools/_schema.py", '"…"')}
PRINTED_TEMPLATES = ("runbook.md.j2", "_macros.md.j2", "restore_runbook.md.j2", "capacity_plan.md.j2")


def test_agent19s_own_words_are_ascii_at_the_source() -> None:
    """Every string literal of the package that is not a docstring (a message, a hint, a fix, a field's description,
    a renderer's word) and every template printed to stdout (the runbook, the restore runbook, the capacity plan) is
    ASCII: a new message with a typographic dash would make some command exit 2 under an ASCII stdout again, on a
    path no subprocess test here reaches."""
    import ast
    import io
    import tokenize

    found = []
    for path in sorted((ROOT / "agent19").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in NOT_REPORT_WORDS:
            continue
        source = path.read_text(encoding="utf-8")
        docs = [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)]
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if (tok.type == tokenize.STRING and not tok.string.isascii() and (name, tok.string) not in MCP_ONLY
                    and not any(a <= tok.start and tok.end <= b for a, b in docs)):
                found.append(f"{name}:{tok.start[0]}: {tok.string[:80]}")
    templates = ROOT / "agent19" / "report" / "templates"
    found += [f"{t}: {line[:80]}" for t in PRINTED_TEMPLATES
              for line in (templates / t).read_text(encoding="utf-8").splitlines() if not line.isascii()]
    assert not found, "\n".join(found)
