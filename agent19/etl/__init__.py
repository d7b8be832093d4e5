"""ETL: incremental batch loads, change data capture and data-quality checks.

Each module is engine code over pydantic models (no MCP or CLI imports); tools in agent19/tools/ expose them.
"""
