"""agent19: PostgreSQL database engineering for LLM assistants, pipelines and people.

The engine is plain Python over pydantic models; :mod:`agent19.server` (MCP) and
:mod:`agent19.cli` (command line) are thin adapters over the tools declared in
:mod:`agent19.tools`.
"""

__version__ = "0.1.0"
