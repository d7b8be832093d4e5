"""Operations: replication and HA status, database health, capacity, PgBouncer, backup verification.

Each module is engine code over pydantic models (no MCP or CLI imports); tools in agent19/tools/ expose them.
"""
