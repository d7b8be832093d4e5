"""Documents about a migration: runbook, specification, rollback plan and the recipients' handoffs.

:func:`agent19.report.build.build_report` makes the models from a plan; :mod:`agent19.report.render`
renders them with the jinja2 templates in ``templates/``; :mod:`agent19.report.schema` publishes
the JSON Schema of ``handoff.json``.
"""
