"""The allowlist of statement kinds that lose nothing: everything else is destructive until shown otherwise."""

import pytest

from agent19.migrate.parse import parse_sql
from agent19.safety.detect import not_known_safe
from agent19.safety.kinds import runs_outside_transaction

ADMITTED = [
    "CREATE TABLE t (id int)",
    "CREATE TABLE t2 AS SELECT 1 AS a",
    "CREATE INDEX i ON t (id)",
    "CREATE OR REPLACE VIEW v AS SELECT 1 AS a",
    "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
    "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
    "ALTER TABLE t ADD CONSTRAINT c_pos CHECK (c > 0) NOT VALID",
    "COMMENT ON TABLE t IS 'x'",
    "ANALYZE t",
    "VACUUM t",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "DELETE FROM t WHERE id = 1",  # measured, not refused on sight
    "UPDATE t SET c = 1",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
]
REFUSED = [
    "DROP OWNED BY app",
    "REASSIGN OWNED BY app TO other",
    "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u",
    "DROP ROLE app",
    "CREATE ROLE boss SUPERUSER",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "COPY t TO PROGRAM 'cat'",
    "COPY t FROM '/etc/passwd'",
    "GRANT pg_read_server_files TO app",
    "REVOKE SELECT ON t FROM app",
    "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
    "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "ALTER TABLE t DISABLE TRIGGER ALL",
    "ALTER TABLE t DROP CONSTRAINT c_pos",
    "ALTER TABLE t SET UNLOGGED",
    "ALTER TABLE p DETACH PARTITION p1",
    "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
    "SET session_authorization = 'app'",
    "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
    "SECURITY LABEL ON TABLE t IS 'x'",
]


@pytest.mark.parametrize("sql", ADMITTED)
def test_kinds_that_lose_nothing_are_admitted(sql):
    assert not_known_safe(parse_sql(sql)[0]) is None


@pytest.mark.parametrize("sql", REFUSED)
def test_every_other_kind_is_destructive_until_shown_otherwise(sql):
    finding = not_known_safe(parse_sql(sql)[0])
    assert finding is not None and finding.kind == "not_known_safe" and finding.data_loss
    assert "treated as destructive" in finding.reason or "cannot be verified" in finding.reason


def test_kinds_postgres_runs_outside_a_transaction():
    assert runs_outside_transaction(parse_sql("CREATE INDEX CONCURRENTLY i ON t (id)")[0])
    assert runs_outside_transaction(parse_sql("REINDEX (CONCURRENTLY) TABLE t")[0])
    assert runs_outside_transaction(parse_sql("VACUUM t")[0])
    assert not runs_outside_transaction(parse_sql("CREATE INDEX i ON t (id)")[0])
