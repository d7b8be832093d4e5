"""The one table of function facts (agent19.safety.function_facts) names real functions, and every guard
reads it: read-only mode refuses each effectful name, a dry run refuses each escaping one, and destructive-
operation detection reports each side-effect call."""

from __future__ import annotations

import psycopg
import pytest

from agent19.migrate.parse import parse_sql
from agent19.safety import readonly
from agent19.safety.detect import detect
from agent19.safety.function_facts import (
    DENIED_IN_READS,
    ESCAPING,
    FUNCTION_FACTS,
    SEQUENCE_FUNCTIONS,
    SIDE_EFFECT,
)

# where the names not built into PostgreSQL 15 come from (contrib, installed with the server)
EXTENSIONS = ("dblink", "adminpack", "tablefunc", "pg_visibility", "pg_stat_statements", "pg_prewarm", "pg_surgery",
              "xml2", "refint")


def test_every_name_in_the_table_is_a_function_of_the_server_or_its_contrib(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for ext in EXTENSIONS:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
        known = {r[0] for r in conn.execute("SELECT DISTINCT proname FROM pg_proc")}
        major = conn.info.server_version // 10000
    # renamed or added across versions: pg_start_backup/pg_stop_backup (≤ 14), pg_backup_* (≥ 15),
    # pg_sync_replication_slots (17), pg_ident_file_mappings (15)
    version_dependent = {"pg_start_backup", "pg_stop_backup", "pg_backup_start", "pg_backup_stop",
                         "pg_sync_replication_slots", "pg_ident_file_mappings", "pg_logdir_ls",
                         # adminpack 1.0's own names, dropped by its later versions (a migration may install 1.0)
                         "pg_file_read", "pg_file_length", "pg_logfile_rotate"}
    missing = sorted(set(FUNCTION_FACTS) - known - version_dependent)
    assert not missing, f"names in the table that PostgreSQL {major} does not have (typos?): {missing}"


def test_the_derived_sets_agree_with_each_other() -> None:
    # a call that survives a rollback or is done for its side effect is never allowed in a read,
    # except sequence functions (the server's read-only transaction refuses those; a backfill may call nextval)
    assert (ESCAPING | SIDE_EFFECT) - SEQUENCE_FUNCTIONS <= DENIED_IN_READS
    assert SEQUENCE_FUNCTIONS == {"nextval", "setval"}


@pytest.mark.parametrize("name", sorted(DENIED_IN_READS))
def test_read_only_mode_refuses_each_effectful_name(name: str) -> None:
    [st] = parse_sql(f"SELECT {name}(1)")
    with pytest.raises(readonly.ReadOnlyViolation):
        readonly.check_statements([st])


@pytest.mark.parametrize("name", sorted(ESCAPING))
def test_a_dry_run_refuses_each_name_that_escapes_the_rollback(name: str) -> None:
    [st] = parse_sql(f"SELECT {name}(1)")
    with pytest.raises(readonly.ReadOnlyViolation, match="outside the transaction"):
        readonly.check_escapes(st)


@pytest.mark.parametrize("name", sorted(SIDE_EFFECT))
def test_detection_reports_each_side_effect_call(name: str) -> None:
    findings = detect(f"SELECT {name}(1)")
    assert findings, f"SELECT {name}(1) was not reported as a side effect"


def test_a_sequence_call_stays_allowed_where_a_write_may_make_it() -> None:
    [st] = parse_sql("UPDATE t SET id = nextval('s')")
    readonly.check_calls(st.tree)  # execute-mode argument checks: a backfill may draw from a sequence


def test_the_known_extensions_are_real_names(dsn: str) -> None:
    """A typo would make a known extension's C code unreadable (or trust a name no extension has)."""
    from agent19.safety.function_facts import KNOWN_EXTENSIONS

    third_party = {"address_standardizer", "hypopg", "pg_cron", "pg_partman", "postgis", "postgis_raster",
                   "postgis_sfcgal", "postgis_tiger_geocoder", "postgis_topology", "vector"}
    with psycopg.connect(dsn) as conn:
        available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    assert not (KNOWN_EXTENSIONS - third_party) - available
    assert "hypopg" in available  # the machine's own third-party one, installed by .ci/run
