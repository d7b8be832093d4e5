"""A19025 fk-without-index looks for an index on the referencing columns anywhere in the linted set. In a large file
the statements' trees are not decoded, and the table each index, PRIMARY KEY or UNIQUE is on is read from the
tree's JSON text: the finding must be the same as when every tree is decoded, for names JSON escapes too."""

from __future__ import annotations

import pytest

import agent19.migrate.parse as parse
from agent19.migrate.lint.engine import lint_sql

SQL = """
CREATE TABLE p (id bigint PRIMARY KEY);
ALTER TABLE "Sch""ema"."ta\\b" ADD CONSTRAINT f1 FOREIGN KEY (a) REFERENCES p (id) NOT VALID;
ALTER TABLE "Sch""ema"."ta\\bx" ADD CONSTRAINT f2 FOREIGN KEY (a) REFERENCES p (id) NOT VALID;
ALTER TABLE "é" ADD CONSTRAINT f3 FOREIGN KEY (b) REFERENCES p (id) NOT VALID;
ALTER TABLE kid ADD CONSTRAINT f4 FOREIGN KEY (c) REFERENCES p (id) NOT VALID;
ALTER TABLE other.kid ADD CONSTRAINT f5 FOREIGN KEY (c) REFERENCES p (id) NOT VALID;
CREATE INDEX CONCURRENTLY i1 ON "Sch""ema"."ta\\b" (a);
CREATE INDEX CONCURRENTLY i2 ON public."é" (b, a);
ALTER TABLE other.kid ADD CONSTRAINT u UNIQUE (c);
"""


@pytest.mark.parametrize("keep", [10**9, 0])
def test_an_index_later_in_the_set_is_found_on_exactly_its_table(keep, monkeypatch):
    monkeypatch.setattr(parse, "KEEP_DECODED_CHARS", keep)
    report = lint_sql(SQL, pg_version=15)
    flagged = [s.sql.split(" ADD CONSTRAINT ")[1][:2] for s in report.statements
               if any(f.rule == "A19025" for f in s.findings)]
    assert flagged == ["f2", "f4"]  # f1, f3 and f5 have an index (i1, i2) or a UNIQUE (u) leading with the column
