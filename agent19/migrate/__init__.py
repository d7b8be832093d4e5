"""Migrations: parse → classify → lint → plan; dry-run; rollback; zero-downtime patterns."""
