"""What a lint reports: per statement its facts and findings, and the summary — the JSON shape CI systems parse
(:mod:`agent19.migrate.lint.engine` computes them)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_serializer

from agent19.migrate.lint.config import Threshold
from agent19.migrate.lint.rules._base import LazyText, Severity
from agent19.migrate.model import Risk


class Finding(BaseModel):
    rule: str = Field(description="rule code, e.g. A19001 (see docs/rules.md)")
    severity: Severity
    message: str
    fix: str | None = Field(default=None, description="the safe alternative, as SQL where it can be generated")

    # A rule may give a LazyText (rules/_base.py) as ``message`` or ``fix``: written only when the finding is read
    # or dumped, so a large report does not hold every finding's texts until it is rendered. Readers see a str.
    @field_serializer("message", "fix")
    def _written(self, text: str | LazyText | None):  # no return type: the schema stays the fields' own
        return str(text) if isinstance(text, LazyText) else text


def _text_property(name: str) -> property:
    """``finding.<name>``: the text, written now when a LazyText holds it (a data descriptor on the class comes
    before the instance's ``__dict__``, where pydantic keeps the field)."""

    def read(finding: Finding) -> str | None:
        text = finding.__dict__.get(name)
        return str(text) if isinstance(text, LazyText) else text

    def write(finding: Finding, value: str | None) -> None:
        finding.__dict__[name] = value

    return property(read, write)


Finding.message = _text_property("message")  # type: ignore[assignment,method-assign]
Finding.fix = _text_property("fix")  # type: ignore[assignment,method-assign]


class StatementReport(BaseModel):
    file: str | None
    line: int
    sql: str
    kind: str
    tables: list[str]
    lock: str | None = Field(description="strongest lock mode taken, pg_locks spelling")
    rewrite: bool
    in_transaction: bool = Field(description="can run inside a transaction block")
    risk: Risk
    findings: list[Finding]


class Summary(BaseModel):
    files: int
    statements: int
    errors: int
    warnings: int
    infos: int
    ignored: int = Field(description="findings silenced by agent19:ignore comments")
    by_rule: dict[str, int]
    risk: Risk = Field(description="the highest risk of any statement")
    pg_version: int
    live: bool = Field(description="true when a live database supplied the catalog and server version")
    fail_on: Threshold
    failed: bool = Field(description="a finding at or above fail_on remains: the CLI exits 1")
    disabled: list[str] = []
    assumptions: list[str] = []


class LintReport(BaseModel):
    statements: list[StatementReport]
    summary: Summary
