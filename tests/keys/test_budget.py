"""Budgets: how they are written, where periods start, and how spend is counted."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from meterfox_cli.errors import KeyError_
from meterfox_cli.keys.budget import (
    Budget,
    Period,
    SpendCounter,
    next_period_start,
    parse_budget,
    period_start,
)
from meterfox_cli.money import format_usd
from tests.keys.support import add_request

DOLLAR = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25/month", Budget(25 * DOLLAR, Period.MONTH)),
        ("$2.50/day", Budget(2_500_000_000, Period.DAY)),
        ("10 / week", Budget(10 * DOLLAR, Period.WEEK)),
        ("0.001/monthly", Budget(1_000_000, Period.MONTH)),
        ("3/d", Budget(3 * DOLLAR, Period.DAY)),
    ],
)
def test_budgets_are_read_as_amount_per_period(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["25", "25/year", "/month", "-1/day", "0/day", "abc/day", ""])
def test_unreadable_budgets_say_how_to_write_one(text):
    with pytest.raises(KeyError_, match=r"25/month|above zero"):
        parse_budget(text)


def test_budget_renders_as_it_is_written():
    assert str(parse_budget("25/month")) == "$25.00/month"
    assert format_usd(4_200_000) == "$0.0042"


# 2001..2099, away from the platform limits of local-time conversion.
instants = st.floats(min_value=978_307_200, max_value=4_070_908_800, allow_nan=False)


# Zones with DST, a 30-minute DST (Lord Howe), and DST switching at midnight (Santiago).
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago"]


@contextmanager
def local_zone(zone: str) -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@given(now=instants, period=st.sampled_from(list(Period)), zone=st.sampled_from(ZONES))
@example(now=4_070_908_799.9999995, period=Period.DAY, zone="UTC")  # rounds up to midnight
@example(now=1_757_217_600.5, period=Period.DAY, zone="America/Santiago")  # DST at 00:00
def test_every_instant_is_inside_exactly_its_period(now, period, zone):
    with local_zone(zone):
        start, end = period_start(period, now), next_period_start(period, now)
        assert start <= now < end
        local = datetime.fromtimestamp(start)
        if period is Period.WEEK:
            assert local.weekday() == 0
        if period is Period.MONTH:
            assert local.day == 1
        # Midnight, or the first instant of the day where DST skips midnight.
        assert local.hour == 0 or datetime.fromtimestamp(start - 1).date() < local.date()
        # The next period starts where this one ends.
        assert period_start(period, end) == end


def test_spend_counts_the_keys_priced_requests_this_period(conn):
    now = time.time()
    start = period_start(Period.MONTH, now)
    add_request(conn, "app", 3 * DOLLAR, now - 10)
    add_request(conn, "app", None, now - 5)  # unpriced: counts as nothing
    add_request(conn, "app", 7 * DOLLAR, start - 1)  # last month
    add_request(conn, "other", 11 * DOLLAR, now - 1)
    counter = SpendCounter()
    assert counter.refresh(conn, {"app": Period.MONTH}, now) == {"app": 3 * DOLLAR}


def test_spend_follows_new_rows(conn):
    now = time.time()
    counter = SpendCounter()
    assert counter.refresh(conn, {"app": Period.DAY, "b": Period.DAY}, now) == {"app": 0, "b": 0}
    add_request(conn, "app", 2 * DOLLAR, now)
    add_request(conn, "b", 1 * DOLLAR, now)
    add_request(conn, "app", 1 * DOLLAR, now)
    assert counter.refresh(conn, {"app": Period.DAY, "b": Period.DAY}, now) == {
        "app": 3 * DOLLAR,
        "b": 1 * DOLLAR,
    }
    add_request(conn, "app", 5, now)
    assert counter.refresh(conn, {"app": Period.DAY, "b": Period.DAY}, now)["app"] == 3 * DOLLAR + 5


def test_a_new_period_starts_from_zero(conn):
    today = datetime.now().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = (today - timedelta(days=1)).timestamp()
    add_request(conn, "app", DOLLAR, yesterday)
    counter = SpendCounter()
    assert counter.refresh(conn, {"app": Period.DAY}, yesterday) == {"app": DOLLAR}
    assert counter.refresh(conn, {"app": Period.DAY}, today.timestamp()) == {"app": 0}
