"""Zero-downtime patterns: the safe way to make each dangerous schema change, as ordered phases.

Plain functions, no database needed; lint rules call them for their "safe alternative" SQL::

    from agent19.migrate import patterns
    p = patterns.set_not_null("public.orders", "customer_id", pg_version=15)
    print(p.to_sql())

Each returns a :class:`~agent19.migrate.patterns.model.Pattern`. :func:`~agent19.migrate.patterns.runner.run_pattern`
applies one phase by phase on a server, observing the locks each phase really takes.

A name below loads its module when first read (``patterns.set_not_null`` or ``from … import set_not_null``):
a lint rule that imports this package or :mod:`~agent19.migrate.patterns.sqlnames` does not load the column
patterns and the catalog models behind them until it writes a fix with one (tests/test_startup_imports.py).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the names are, for type checkers: at run time __getattr__ loads each where it is read
    from agent19.migrate.patterns.columns import add_column_volatile_default, change_column_type
    from agent19.migrate.patterns.constraints import (
        add_check,
        add_foreign_key,
        add_primary_key,
        add_unique,
        set_not_null,
    )
    from agent19.migrate.patterns.indexes import create_index, drop_index, reindex
    from agent19.migrate.patterns.model import BackfillStep, Pattern, Phase, Step
    from agent19.migrate.patterns.rename import rename_column, rename_table

_MODULE_OF = {
    "add_column_volatile_default": "columns", "change_column_type": "columns",
    "add_check": "constraints", "add_foreign_key": "constraints", "add_primary_key": "constraints",
    "add_unique": "constraints", "set_not_null": "constraints",
    "create_index": "indexes", "drop_index": "indexes", "reindex": "indexes",
    "BackfillStep": "model", "Pattern": "model", "Phase": "model", "Step": "model",
    "rename_column": "rename", "rename_table": "rename",
}

__all__ = [
    "BackfillStep", "Pattern", "Phase", "Step",
    "add_check", "add_column_volatile_default", "add_foreign_key", "add_primary_key", "add_unique",
    "change_column_type", "create_index", "drop_index", "reindex", "rename_column", "rename_table", "set_not_null",
]


def __getattr__(name: str) -> object:
    """``patterns.<name>``: the pattern (or model) from its module, imported now; an error in that module is raised
    as it is (an ImportError stays one)."""
    module = _MODULE_OF.get(name)
    if module is None:  # also how ``from agent19.migrate.patterns import sqlnames`` finds the submodule instead
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
