"""A reader login that is a member of a superuser role, or may grant itself roles (CREATEROLE), is privileged
(review r34 F3: `SET ROLE` reaches the superuser role, from the login or from the code it runs)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.test_cli import agent19

STRICT = {"AGENT19_ALLOW_PRIVILEGED_READS": "0"}  # the tests' default opts in (tests/conftest.py)


@pytest.mark.parametrize(("grant", "words"), [("SUPERUSER NOLOGIN", "a superuser"),
                                              ("CREATEROLE NOLOGIN", "a member of CREATEROLE")])
def test_a_reader_above_its_attributes_is_refused(dsn: str, grant: str, words: str) -> None:
    above, reader = (f"r_{uuid.uuid4().hex[:8]}" for _ in range(2))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {above} {grant}; CREATE ROLE {reader} LOGIN IN ROLE {above}")
    out = agent19("explain", "--dsn", dsn, "--read-dsn", make_conninfo(dsn, user=reader), "--no-analyze",
                  "SELECT 1", env=STRICT)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and f"user SQL would run as '{reader}', {words}" in text, text


def test_a_plain_reader_is_not(dsn: str) -> None:
    reader = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {reader} LOGIN")
    out = agent19("explain", "--dsn", dsn, "--read-dsn", make_conninfo(dsn, user=reader), "--no-analyze",
                  "SELECT 1", env=STRICT)
    assert out.returncode == 0, out.stdout + out.stderr
