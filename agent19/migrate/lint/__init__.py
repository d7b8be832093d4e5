"""Lint: the rule engine, its configuration and the rules."""
