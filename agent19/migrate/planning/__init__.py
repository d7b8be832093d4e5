"""Planning: a migration's plan, ordering, escalations, and what it costs writers."""
