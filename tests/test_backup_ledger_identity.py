"""The verified-backup ledger knows a database by the server's own identity, not by the address written in the DSN:
a backup verified through `localhost` counts through `127.0.0.1`, and never for another database of the server
(a hostile review found localhost over-refused and two servers behind one tunnel address sharing a backup)."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.safety import policy
from tests.conftest import owner_login


def _db(dsn: str, tmp_path, **change: str) -> Database:
    return Database(Settings.load(env={"AGENT19_DATA_DIR": str(tmp_path), "AGENT19_REQUIRE_VERIFIED_BACKUP": "24"},
                                  dsn=make_conninfo(dsn, **change), mode="execute"))


def test_a_backup_counts_for_the_database_whatever_address_reaches_it(pg, dsn, tmp_path):
    app = owner_login(dsn)
    port = conninfo_to_dict(app).get("port")
    via_name, via_ip = _db(app, tmp_path, host="localhost", port=str(port)), _db(app, tmp_path, host="127.0.0.1")
    other = _db(pg.dsn, tmp_path)  # the server's postgres database
    try:
        assert policy.unbacked(via_ip.settings, via_ip, "UpdateStmt") is not None  # nothing verified yet
        policy.record_backup(via_name.settings, via_name, "logical")
        assert policy.unbacked(via_ip.settings, via_ip, "UpdateStmt") is None
        assert policy.unbacked(other.settings, other, "DeleteStmt") is not None
        assert policy.unbacked(other.settings, other, "SelectStmt") is None  # reads are never held
    finally:
        for d in (via_name, via_ip, other):
            d.close()
