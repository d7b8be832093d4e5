from pathlib import Path

import pytest

from agent19.config import AccessMode, Settings, parse_duration_ms
from agent19.db.redact import redact_dsn, redact_text
from agent19.errors import ConfigError


def test_defaults_are_read_only_with_timeouts():
    s = Settings.load(env={})
    assert s.mode is AccessMode.READ_ONLY
    assert s.dsn is None
    assert s.statement_timeout_ms == 30_000 and s.lock_timeout_ms == 5_000


def test_flags_override_environment():
    env = {"DATABASE_URL": "postgresql://a@h/db", "AGENT19_MODE": "dry-run", "AGENT19_LOCK_TIMEOUT": "2s"}
    s = Settings.load(env=env, mode="execute", data_dir="/tmp/x")
    assert s.mode is AccessMode.EXECUTE
    assert s.dsn_value() == "postgresql://a@h/db"
    assert s.lock_timeout_ms == 2000
    assert s.data_dir == Path("/tmp/x")


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [({"mode": "admin"}, "mode"), ({"lock_timeout": "soon"}, "lock_timeout"),
     ({"statement_timeout": "5 days"}, "statement_timeout")],
)
def test_invalid_value_names_the_setting(overrides, setting):
    with pytest.raises(ConfigError) as err:
        Settings.load(env={}, **overrides)
    assert str(err.value).startswith(f"{setting}:")


@pytest.mark.parametrize(("text", "ms"), [("250ms", 250), ("5s", 5000), ("2min", 120_000), ("1h", 3_600_000),
                                           ("700", 700)])
def test_durations(text, ms):
    assert parse_duration_ms(text, "x") == ms


def test_mode_order():
    assert AccessMode.EXECUTE.allows(AccessMode.DRY_RUN)
    assert not AccessMode.READ_ONLY.allows(AccessMode.DRY_RUN)


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://app:hunter2x@db.example:5432/shop", "host=db user=app password=hunter2x dbname=shop",
     "postgres://app:hunter2x@db/shop?sslmode=require"],
)
def test_dsn_redaction_hides_password(dsn):
    shown = redact_dsn(dsn)
    assert "hunter2x" not in shown
    assert "***" in shown and "app" in shown


def test_redact_text_masks_uri_kv_and_literal_secrets():
    text = "failed: postgresql://u:pw1234@h/d and password='x y z' and token pw1234 again"
    out = redact_text(text, "pw1234")
    assert "pw1234" not in out and "x y z" not in out
