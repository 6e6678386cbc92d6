"""The alert rules without I/O: which thresholds a spend has crossed, the projection to the
period's end, the spike rule's comparison, and the message with the figures it carries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterfox_cli.alerts.rules import (
    DaySpend,
    Standing,
    budget_alert,
    crossed,
    projected_nanousd,
    spike_alert,
)
from tests.fakes.records import at

USD = 10**9
HOUR = 3600.0


def standing(spend_usd: str, budget_usd: str = "10") -> Standing:
    return Standing(
        rule="monthly",
        subject="the monthly budget",
        spend_nanousd=int(Decimal(spend_usd) * USD),
        budget_nanousd=int(Decimal(budget_usd) * USD),
        period="month",
        period_start=at("2026-11-01 00:00"),
        period_end=at("2026-12-01 00:00"),
        command="meterfox report --since 2026-11-01",
    )


@pytest.mark.parametrize(
    ("spend", "reached"),
    [
        ("0", []),
        ("4.999999999", []),
        ("5", [50]),
        ("7.99", [50]),
        ("8", [50, 80]),
        ("10", [50, 80, 100]),
        ("25", [50, 80, 100]),
    ],
)
def test_a_threshold_is_crossed_when_the_spend_reaches_it_exactly(spend, reached):
    assert crossed(standing(spend), [100, 50, 80]) == reached


def test_the_projection_goes_on_at_the_rate_so_far_from_an_hour_in():
    start, end = at("2026-11-01 00:00"), at("2026-11-11 00:00")  # a ten-day period
    assert projected_nanousd(USD, start, end, start + 24 * HOUR) == 10 * USD
    assert projected_nanousd(USD, start, end, end) == USD  # the period is over: what was spent
    # Ten minutes in, it projects as if an hour had gone: not 6 × 240 but 240 × $1.
    assert projected_nanousd(USD, start, end, start + 600) == 240 * USD
    assert projected_nanousd(0, start, end, start + HOUR) == 0


def test_the_message_says_what_crossed_what_the_spend_budget_projection_and_command():
    alert = budget_alert(standing("8.40"), 80, at("2026-11-11 00:00"))
    assert alert.text == (
        "MeterFox: the monthly budget crossed 80% of its $10.00/month budget: $8.40 spent "
        "(84.0%) since 2026-11-01 00:00; at this rate $25.20 by 2026-12-01 00:00. "
        "More: meterfox report --since 2026-11-01"
    )
    figures = alert.figures()
    assert figures["event"] == "budget"
    assert figures["threshold_percent"] == 80
    assert figures["percent"] == "84.0"
    assert figures["spend_usd"] == "8.4"
    assert figures["budget_usd"] == "10"
    assert figures["projected_usd"] == "25.2"
    assert figures["period"] == "month"
    assert figures["command"] == "meterfox report --since 2026-11-01"
    assert figures["text"] == alert.text
    assert alert.period_label == "2026-11-01"


def days(today_usd: str, trailing_usd: str) -> DaySpend:
    return DaySpend(
        today_nanousd=int(Decimal(today_usd) * USD),
        trailing_nanousd=int(Decimal(trailing_usd) * USD),
        trailing_days=7,
        day_start=at("2026-11-29 00:00"),
        day_end=at("2026-11-30 00:00"),
    )


def test_a_spike_is_today_over_factor_times_the_trailing_daily_average():
    now = at("2026-11-29 12:00")
    assert spike_alert(days("3", "7"), Decimal(3), now) is None  # exactly 3 × $1: not over
    alert = spike_alert(days("3.01", "7"), Decimal(3), now)
    assert alert is not None
    assert alert.rule == "spike"
    assert alert.budget_nanousd == 3 * USD
    assert alert.period_label == "2026-11-29"
    assert alert.projected_nanousd == int(Decimal("6.02") * USD)
    assert "today's spend $3.01 is 3.0x the 7-day daily average of $1.00 (alert over 3x)" in (
        alert.text
    )


def test_no_spike_without_a_history_to_average():
    assert spike_alert(days("50", "0"), Decimal(3), at("2026-11-29 12:00")) is None
