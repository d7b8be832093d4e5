"""Destructive-operation safeguards and the read-only guard.

* :mod:`~agent19.safety.detect` — which statements can lose data (parse tree, never keywords).
* :mod:`~agent19.safety.where` — whether a DELETE's or UPDATE's WHERE reaches every row (shared with lint).
* :mod:`~agent19.safety.facts` — the catalog facts detection needs (NOT NULL, column types, volatility).
* :mod:`~agent19.safety.kinds` — the allowlist of statement kinds that lose nothing (others: destructive).
* :mod:`~agent19.safety.measure` — what a write did, measured in a savepoint (rows per table, tables gone).
* :mod:`~agent19.safety.objects` — every definition (views, indexes, functions, defaults…) read by oid, to see
  what a statement dropped or changed.
* :mod:`~agent19.safety.assess` — static findings, allowlist and measurement, as one assessment.
* :mod:`~agent19.safety.impact` — exact rows, sizes, dependents and backups, from the live database.
* :mod:`~agent19.safety.challenge` — HMAC challenge tokens.
* :mod:`~agent19.safety.ledger` — each token's approval and single use, in the target database.
* :mod:`~agent19.safety.tally` — the rows agent19 removed without confirmation, per table, in the target
  database: the limits hold over a window, not only per statement.
* :mod:`~agent19.safety.protocol` — the two-step confirmation protocol; the phrase comes from a human.
* :mod:`~agent19.safety.execution` — step 2's transaction: lock, count exactly, spend the token, run.
* :mod:`~agent19.safety.page` — the one-time loopback page where a human confirms.
* :mod:`~agent19.safety.report` — the phrase, checklist and alternatives of a step-1 report.
* :mod:`~agent19.safety.archive` — archive-before-drop, verified by row counts.
* :mod:`~agent19.safety.audit` — the JSON-lines audit log.
* :mod:`~agent19.safety.readonly` — the read-only guard.
* :mod:`~agent19.safety.run` — running one statement; results marked untrusted.

Importing the package imports none of them (``agent19 lint`` reaches :mod:`~agent19.safety.gate` only): import
the module that holds what you need, e.g. ``from agent19.safety.detect import detect``.
"""
