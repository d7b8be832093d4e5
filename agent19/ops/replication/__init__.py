"""Replication and HA status: the server's role, its standbys, slots, archiving and failover readiness."""
