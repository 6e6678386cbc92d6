"""Numbers for people: counts, durations and shares, rounded as a person reads them."""

from __future__ import annotations

import pytest

from meterfox_cli.report.cells import count, duration


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (9_999, "9,999"),
        (12_345, "12.3k"),
        (999_499, "999k"),
        (4_560_000, "4.56M"),
        (7_890_000_000, "7.89B"),
    ],
)
def test_counts_are_compact_past_ten_thousand(value, shown):
    assert count(value) == shown


@pytest.mark.parametrize(
    ("ms", "shown"), [(None, "—"), (80.4, "80 ms"), (1500.0, "1.50 s"), (21_500.0, "21.5 s")]
)
def test_durations(ms, shown):
    assert duration(ms) == shown
