"""A dry run or rollback check pointed at a hot standby says so, instead of FAILED for a correct migration.

Found by a hostile review: `agent19 dry-run` on a standby printed "FAILED: 5 statements …; 5 error(s)", each
"cannot execute ALTER TABLE in a read-only transaction", with "lock public.orders: observed -, predicted
AccessExclusiveLock [MISMATCH]"; rollback-check said "rollback not verified: 10 statement(s) failed".
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import primary_and_standby
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).parent.parent
UP = "ALTER TABLE orders ADD COLUMN note text;\nCREATE INDEX orders_note_idx ON orders (note);\n"
DOWN = "DROP INDEX orders_note_idx;\nALTER TABLE orders DROP COLUMN note;\n"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[ThrowawayServer, ThrowawayServer]]:
    with primary_and_standby("CREATE TABLE orders (id int PRIMARY KEY); "
                             "INSERT INTO orders SELECT generate_series(1, 100)") as servers:
        yield servers


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--mode", "dry-run", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_standby_is_named_as_the_reason_and_the_primary_still_passes(pair: tuple[ThrowawayServer, ...],
                                                                        tmp_path: Path) -> None:
    primary, standby = pair
    (tmp_path / "up.sql").write_text(UP)
    (tmp_path / "down.sql").write_text(DOWN)
    for args in (("dry-run", str(tmp_path / "up.sql")),
                 ("rollback-check", str(tmp_path / "up.sql"), str(tmp_path / "down.sql"))):
        done = _cli(standby.dsn, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "standby" in done.stderr and "primary" in done.stderr, done.stderr
        assert "FAILED" not in done.stdout and "MISMATCH" not in done.stdout
        on_primary = _cli(primary.dsn, *args)
        assert on_primary.returncode == 0, on_primary.stdout + on_primary.stderr
