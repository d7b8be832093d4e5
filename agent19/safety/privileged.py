"""Which predefined roles make a login privileged: the read guard's (:mod:`agent19.safety.gate`) and a trial's
(:mod:`agent19.safety.trial_owners`). Superuser, ``CREATEROLE`` (it can grant itself any of them) and, for a trial,
``BYPASSRLS`` and ``REPLICATION`` are read from the role's attributes, a role's it belongs to included."""

PRIVILEGED_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
                    "pg_signal_backend")
"""Server files, programs and other sessions: a login in any of them reads as a privileged one."""

TRIAL_PRIVILEGED = (*PRIVILEGED_ROLES, "pg_read_all_data", "pg_write_all_data", "pg_read_all_stats",
                    "pg_read_all_settings", "pg_monitor", "pg_checkpoint")
"""Roles a trial's login may not lend to another role's code: beyond the read guard's, every table's rows, other
sessions' queries and the server's settings."""
