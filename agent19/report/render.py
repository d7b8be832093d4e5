"""Render the document models to Markdown with the jinja2 templates in ``templates/``.

Templates receive the pydantic models themselves (never pre-built strings); the filters below are
formatting only: Markdown table cells, SQL statement terminators, words for enum values.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent19.migrate.planning.model import DEPLOY_MARK
from agent19.report.model import Handoff, Report

if TYPE_CHECKING:  # jinja2 is imported when a document is rendered: the MCP server lists tools without it
    from jinja2 import Environment

STATUS = {"satisfied": "[ok] satisfied", "not_satisfied": "[no] not satisfied", "unknown": "[?] unknown"}


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _stmt(sql: str) -> str:
    text = sql.strip()
    return text if text.endswith(";") else text + ";"


@cache
def environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("agent19.report", "templates"), undefined=StrictUndefined, autoescape=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(
        cell=_cell, stmt=_stmt, words=lambda v: str(v).replace("_", " "), status=lambda v: STATUS[v],
        major=lambda v: v // 10000, oneline=lambda v: " ".join(str(v).split()),
    )
    return env


def render(template: str, **models: BaseModel) -> str:
    text = environment().get_template(template).render(**models)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


LOSSY_UNDO = ("-- structure only: the values this step destroyed (dropped, rounded, cut) come back only from the "
              "backup taken before the deployment (restore procedure: rollback-plan.md)\n")


def documents(report: Report) -> dict[str, str]:
    """Every document of ``report`` as file name → text (Markdown, SQL and handoff.json)."""
    h = report.handoff
    steps = report.runbook.steps
    migration_sql = "".join(f"-- step {s.order}: {s.title}\n{_stmt(s.sql)}\n\n"
                            + (f"{DEPLOY_MARK}\n\n" if s.deploy_after else "") for s in steps)
    rollback_sql = "".join(
        f"-- undo step {s.order}\n" + (LOSSY_UNDO if s.sql and s.data_loss else "")
        + (_stmt(s.sql) if s.sql else f"-- manual: {s.manual}") + "\n\n"
        for s in report.rollback_plan.steps)
    return {
        h.files["runbook"]: render("runbook.md.j2", r=report.runbook),
        h.files["specification"]: render("specification.md.j2", s=report.specification),
        h.files["rollback_plan"]: render("rollback.md.j2", p=report.rollback_plan),
        h.files["migration_sql"]: f"-- {report.runbook.header.name} ({h.migration.id})\n\n" + migration_sql,
        h.files["rollback_sql"]: f"-- rollback of {h.migration.id}: last step first\n\n" + rollback_sql,
        h.files["devops"]: render("devops.md.j2", h=h, steps=report.runbook),
        h.files["application"]: render("application.md.j2", h=h),
        h.files["qa"]: render("qa.md.j2", h=h),
        h.files["security"]: render("security.md.j2", h=h),
        h.files["handoff"]: handoff_json(h),
    }


def handoff_json(h: Handoff) -> str:
    return json.dumps(h.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
