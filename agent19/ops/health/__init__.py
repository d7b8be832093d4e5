"""``health_check``: the checks (sessions, vacuum, statistics, objects, replication), their thresholds and
how they query the server without waiting."""
