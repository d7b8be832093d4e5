"""PgBouncer: a configuration generated from the live database, and a running pooler's status."""
