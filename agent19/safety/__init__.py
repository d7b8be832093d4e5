"""Destructive-operation safeguards and the read-only guard.

* :mod:`~agent19.safety.detect` — which statements can lose data (parse tree, never keywords).
* :mod:`~agent19.safety.facts` — the catalog facts detection needs (NOT NULL, column types, volatility).
* :mod:`~agent19.safety.impact` — rows, sizes, dependents and backups, from the live database.
* :mod:`~agent19.safety.challenge` — HMAC challenge tokens, single use.
* :mod:`~agent19.safety.protocol` — the two-step confirmation (and elicitation) protocol.
* :mod:`~agent19.safety.report` — the phrase, checklist and alternatives of a step-1 report.
* :mod:`~agent19.safety.archive` — archive-before-drop, verified by row counts.
* :mod:`~agent19.safety.audit` — the JSON-lines audit log.
* :mod:`~agent19.safety.readonly` — the read-only guard.
* :mod:`~agent19.safety.run` — running one statement; results marked untrusted.
"""

from agent19.safety.detect import Finding, Risk, Target, detect, judge

__all__ = ["Finding", "Risk", "Target", "detect", "judge"]
