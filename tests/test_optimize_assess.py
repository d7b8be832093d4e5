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
