"""info and health name the login when a setting switches the session's role (review r29 F6).

A database's owner may ``ALTER DATABASE ... SET role = owner``: every session then starts as the owner, the login a
superuser connected with included. ``current_user`` is the owner, yet any code the session runs can ``RESET ROLE``
back to the login's powers, so reporting only ``current_user`` (not a superuser) hid a superuser login. Both reports
now say who the login is."""

from __future__ import annotations

import json

import psycopg

from tests.conftest import owner_login
from tests.test_cli import agent19


def _set_role(dsn: str) -> tuple[str, str]:
    owner = owner_login(dsn, "setrole")
    with psycopg.connect(dsn, autocommit=True) as c:
        login, db = c.execute("SELECT session_user::text, current_database()::text").fetchone()
    role = psycopg.conninfo.conninfo_to_dict(owner)["user"]
    with psycopg.connect(owner, autocommit=True) as c:  # the owner's own right over its database
        c.execute(f'ALTER DATABASE "{db}" SET role = {role}')
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT current_user::text").fetchone()[0] == role  # the setting is in force
    return login, role


def test_info_names_the_superuser_login_behind_a_set_role(dsn: str) -> None:
    login, role = _set_role(dsn)
    out = agent19("info", "--dsn", dsn, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["current_user"], data["is_superuser"]) == (role, False)
    assert (data["login"], data["login_superuser"]) == (login, True)
    text = agent19("info", "--dsn", dsn)
    assert f"the login is {login} (superuser)" in text.stdout, text.stdout
    assert "RESET ROLE" in text.stdout
    decoding = next(f for f in data["features"] if f["name"] == "logical_decoding")  # the login's attribute
    assert f"ALTER ROLE {role}" not in decoding["reason"], decoding  # never: grant the owner's role WAL streaming


def test_health_names_the_login_behind_a_set_role(dsn: str) -> None:
    login, role = _set_role(dsn)
    out = agent19("health", "--dsn", dsn, "--format", "json")
    data = json.loads(out.stdout)
    user = data["summary"]["user"]
    assert user.startswith(role) and f"the login is {login}" in user, user


def test_without_a_setting_the_user_is_the_login(dsn: str) -> None:
    out = agent19("info", "--dsn", dsn)
    assert "the login is" not in out.stdout, out.stdout
