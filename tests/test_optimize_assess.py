"""Measure first: questions without metrics; the simple fix at small scale; scaling only at scale."""

from agent19.cli import main
from agent19.optimize.assess import Metrics, assess


def test_without_metrics_it_asks_the_four_questions():
    a = assess(Metrics())
    assert not a.measured and len(a.questions) == 4 and a.decisions == []
    assert any("pg_stat_statements" in h for h in a.how_to_measure)


def test_small_scale_gets_the_simple_fix_and_nothing_else():
    a = assess(Metrics(execution_ms=300, table_rows=50_000, qps=2, have_explain=True))
    assert a.measured and {d.verdict for d in a.decisions} == {"premature"}
    assert "index" in a.simple_fix_first


def test_large_scale_warrants_partitioning_and_replicas_not_sharding():
    a = assess(Metrics(execution_ms=2000, table_rows=400_000_000, qps=8000, write_share=0.05, have_explain=True))
    verdicts = {d.technique.split(" (")[0]: d.verdict for d in a.decisions}
    assert verdicts["partitioning"] == "warranted" and verdicts["read replicas"] == "warranted"
    assert verdicts["sharding"] == "premature"


def test_cli(capsys):
    assert main(["assess"]) == 0
    assert "measure first" in capsys.readouterr().out


def test_the_simple_fix_names_tools_as_each_face_calls_them(capsys):
    """A model reads MCP tool names; a person at the CLI the commands to type (agent19.tool_names)."""
    a = assess(Metrics(execution_ms=300, table_rows=50_000, qps=2, have_explain=True))
    assert "(explain_query)" in a.simple_fix_first and "verified with advise_indexes" in a.simple_fix_first
    assert main(["assess", "--execution-ms", "300", "--table-rows", "50000", "--qps", "2", "--have-explain",
                 "--format", "json"]) == 0
    said = capsys.readouterr().out
    assert "(`agent19 explain`)" in said and "verified with `agent19 advise`" in said, said
    assert "explain_query" not in said and "advise_indexes" not in said
