"""Operations, one package per job: replication/ (replication and HA status), health/ (health checks),
capacity/ (capacity planning), pgbouncer/ (pooler configuration and status), backup/ (backup status and
verification).

Each module is engine code over pydantic models (no MCP or CLI imports); tools in agent19/tools/ expose them.
"""
