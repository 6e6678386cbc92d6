"""Money: nano-USD as stored, exact USD as computed, and each way an amount is written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterfox_cli.money import (
    decimal_text,
    exact_usd,
    format_usd,
    from_nanousd,
    human_usd,
    to_nanousd,
)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_nanousd_survives_the_round_trip_through_usd(nanousd: int):
    assert to_nanousd(from_nanousd(nanousd)) == nanousd


def test_usd_rounds_half_to_even_at_the_nano_dollar():
    assert to_nanousd(Decimal("0.0000000005")) == 0
    assert to_nanousd(Decimal("0.0000000015")) == 2
    assert from_nanousd(None) is None


def test_exact_usd_keeps_every_digit_and_no_exponent():
    assert exact_usd(Decimal("0.0001408")) == "$0.0001408"
    assert exact_usd(Decimal("1.2E-8")) == "$0.000000012"
    assert exact_usd(Decimal("12.500")) == "$12.5"
    assert exact_usd(None) == "—"
    assert decimal_text(Decimal("0E-9")) == "0"


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
    assert human_usd(Decimal(usd)) == shown


def test_a_stored_amount_reads_as_the_same_dollars_people_see():
    assert format_usd(4_200_000) == human_usd(Decimal("0.0042")) == "$0.0042"
    assert format_usd(25_000_000_000) == "$25.00"
