"""Numbers for people: dollars, counts and durations, rounded as a person reads them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterfox_cli.report.cells import count, duration, money


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        ("0", "$0.00"),
        ("1234.567", "$1,234.57"),
        ("1", "$1.00"),
        ("0.5", "$0.50"),
        ("0.001", "$0.0010"),
        ("0.01234", "$0.0123"),
        ("0.000123456", "$0.000123"),
        ("0.0000001", "<$0.000001"),
    ],
)
def test_money_has_sensible_precision(usd, shown):
    assert money(Decimal(usd)) == shown


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
