"""Dry runs on a real server: rolled-back transactions, scratch databases, verified rollbacks."""
