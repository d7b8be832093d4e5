"""Zero-downtime patterns: the safe way to make each dangerous schema change, as ordered phases.

Plain functions, no database needed; lint rules call them for their "safe alternative" SQL::

    from agent19.migrate import patterns
    p = patterns.set_not_null("public.orders", "customer_id", pg_version=15)
    print(p.to_sql())

Each returns a :class:`~agent19.migrate.patterns.model.Pattern`. :func:`~agent19.migrate.patterns.runner.run_pattern`
applies one phase by phase on a server, observing the locks each phase really takes.
"""

from agent19.migrate.patterns.columns import add_column_volatile_default, change_column_type
from agent19.migrate.patterns.constraints import add_check, add_foreign_key, add_primary_key, add_unique, set_not_null
from agent19.migrate.patterns.indexes import create_index, drop_index, reindex
from agent19.migrate.patterns.model import BackfillStep, Pattern, Phase, Step
from agent19.migrate.patterns.rename import rename_column, rename_table

__all__ = [
    "BackfillStep", "Pattern", "Phase", "Step",
    "add_check", "add_column_volatile_default", "add_foreign_key", "add_primary_key", "add_unique",
    "change_column_type", "create_index", "drop_index", "reindex", "rename_column", "rename_table", "set_not_null",
]
