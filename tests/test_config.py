import dataclasses
import pickle
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


@pytest.mark.parametrize(("var", "value", "setting"), [
    ("AGENT19_MASS_WRITE_FRACTION", "2", "mass_write_fraction"),
    ("AGENT19_MASS_WRITE_FRACTION", "0", "mass_write_fraction"),
    ("AGENT19_MASS_WRITE_ROWS", "0", "mass_write_rows"),
    ("AGENT19_MASS_WRITE_WINDOW_MINUTES", "-1", "mass_write_window_minutes"),
    ("AGENT19_DRY_RUN_MAX_AGE_HOURS", "0", "dry_run_max_age_hours"),
    ("AGENT19_REQUIRE_VERIFIED_BACKUP", "-1", "require_verified_backup_hours"),
    ("AGENT19_ISOLATED_MAX_MB", "10", "isolated_max_mb"),
])
def test_out_of_bounds_values_name_the_setting_and_its_variable(var, value, setting):
    with pytest.raises(ConfigError) as err:
        Settings.load(env={var: value})
    assert str(err.value).startswith(f"{setting} ({var}): ") and value in str(err.value)


def test_secrets_never_show_and_a_copy_is_checked_again():
    dsn = "postgresql://app:hunter2x@db/shop"
    s = Settings.load(env={"DATABASE_URL": dsn, "AGENT19_CONFIRM_KEY": "k3y-hunter2x", "AGENT19_DATA_DIR": "/tmp/x"})
    assert s.dsn_value() == dsn and s.confirm_key.get_secret_value() == "k3y-hunter2x"
    for shown in (str(s), repr(s), f"{s.dsn}", str(s.dsn), repr(s.confirm_key)):
        assert "hunter2x" not in shown, shown
    copy = dataclasses.replace(s, dsn="postgresql://other/db", mode="dry-run")  # text becomes a Secret again
    assert copy.dsn_value() == "postgresql://other/db" and copy.mode is AccessMode.DRY_RUN
    assert "other" not in repr(copy) and pickle.loads(pickle.dumps(s)) == s  # a worker process gets it whole
    with pytest.raises(ConfigError, match="mass_write_rows"):
        dataclasses.replace(s, mass_write_rows=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mode = AccessMode.EXECUTE  # type: ignore[misc]


@pytest.mark.parametrize(("given", "value"), [
    ({"allow_model_confirmation": "false"}, False),
    ({"allow_privileged_reads": "no"}, False),
    ({"require_dry_run": "0"}, False),
    ({"require_lock_ack": "yes"}, True),
    ({"statement_timeout_ms": "5s"}, 5000),
    ({"mass_write_rows": "100"}, 100),
    ({"mass_write_fraction": "0.25"}, 0.25),
    ({"mass_write_window_minutes": "0"}, 0.0),
])
def test_settings_built_in_python_take_values_as_their_types(given, value):
    """A library caller's own config gives text: 'false' must not stay a (true) non-empty string — the
    confirmation protocol reads allow_model_confirmation to accept a phrase from a tool argument."""
    (name, _), = given.items()
    assert getattr(Settings(**given), name) == value and type(getattr(Settings(**given), name)) is type(value)


@pytest.mark.parametrize("given", [
    {"mass_write_rows": None}, {"mass_write_fraction": None}, {"dry_run_max_age_hours": None},
    {"allow_model_confirmation": "maybe"}, {"allow_model_confirmation": 2}, {"mass_write_rows": 1.5},
    {"statement_timeout_ms": 1.5}, {"lock_timeout_ms": True}, {"application_name": 5}, {"dsn": 5},
    {"handoff_dir": 3}, {"data_dir": 3}, {"data_dir": ["/tmp"]}, {"mass_write_fraction": "most"},
])
def test_settings_refuse_values_of_the_wrong_kind(given):
    (name, _), = given.items()
    with pytest.raises(ConfigError, match=name):
        Settings(**given)



def test_a_data_dir_given_is_a_path_in_every_copy_and_the_default_is_the_per_user_one(tmp_path):
    """data_dir is checked and made a Path as it is set (the per-user default is looked up only when read): a copy
    (dataclasses.replace, pickle: a worker process) keeps the one given, and equality and hashing read it."""
    from agent19.config import default_data_dir

    given = Settings(data_dir=str(tmp_path))
    assert given.data_dir == tmp_path and type(given.data_dir) is type(tmp_path)
    assert dataclasses.replace(given, mode="execute").data_dir == tmp_path
    assert pickle.loads(pickle.dumps(given)).data_dir == tmp_path
    assert Settings().data_dir == default_data_dir() and Settings() != given
    assert dataclasses.replace(Settings(), mode="execute").data_dir == default_data_dir()
    assert hash(Settings(data_dir=tmp_path)) == hash(given) and Settings(data_dir=tmp_path) == given


@pytest.mark.parametrize("given", [{"dsn": 1}, {"dsn": ["a"]}, {"confirm_key": 123}, {"read_dsn": 5.0},
                                   {"allow_model_confirmation": [1]}])
def test_settings_load_refuses_what_is_not_text_instead_of_making_it_a_secret(given):
    (name, _), = given.items()
    with pytest.raises(ConfigError, match=name.upper() if name == "allow_model_confirmation" else name):
        Settings.load(env={}, **given)
    assert Settings.load(env={}, allow_model_confirmation=0).allow_model_confirmation is False
