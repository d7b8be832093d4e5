"""Backup status and verification: logical (pg_dump), physical (pg_basebackup) and point-in-time drills,
the comparison of a restored copy with its source, and the restore runbook."""
