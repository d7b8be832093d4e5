"""The lint rules: one module each, discovered here.

To add a rule, add a module that defines ``RULE = Rule(...)`` (see :mod:`._base`) with a bad and a
good example; the tests lint both and ``docs/rules.md`` is generated from the declarations
(``agent19 rules --format markdown``).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from agent19.migrate.lint.rules._base import Hit, Rule, Severity, StatementContext

__all__ = ["Hit", "Rule", "Severity", "StatementContext", "all_rules", "find_rule"]


@cache
def all_rules() -> tuple[Rule, ...]:
    """Every rule, by code."""
    rules: list[Rule] = []
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        rule = getattr(module, "RULE", None)
        if not isinstance(rule, Rule):
            raise TypeError(f"{module.__name__} defines no RULE = Rule(...)")
        rules.append(rule)
    codes = [r.code for r in rules] + [r.name for r in rules] + [a for r in rules for a in r.aliases]
    dupes = {c for c in codes if codes.count(c) > 1}
    if dupes:
        raise ValueError(f"lint rule codes/names declared twice: {sorted(dupes)}")
    return tuple(sorted(rules, key=lambda r: r.code))


def find_rule(key: str) -> Rule | None:
    """A rule by code (``A19001``, any case), name (``create-index-blocking``) or alias (squawk's
    ``prefer-text-field``)."""
    k = key.strip().lower()
    return next((r for r in all_rules() if r.code.lower() == k or r.name == k or k in r.aliases), None)
