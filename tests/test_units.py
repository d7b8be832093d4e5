import pytest

from agent19.units import human_duration, human_size


@pytest.mark.parametrize(("n", "text"), [(None, "unknown size"), (0, "0 bytes"), (1023, "1023 bytes"),
                                         (1536, "1.5 kB"), (50 * 1024**2, "50.0 MB"), (3 * 1024**4, "3.0 TB")])
def test_sizes_match_pg_size_pretty_units(n, text):
    assert human_size(n) == text


@pytest.mark.parametrize(("s", "text"), [(0.25, "0.2 s"), (42, "42 s"), (300, "5.0 min"), (7200, "2.0 h")])
def test_durations(s, text):
    assert human_duration(s) == text
