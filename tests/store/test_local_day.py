"""`local_day`, the row's `day` kept for the minute it was asked for, is the day
`date.fromtimestamp` gives, on any time, in any order, in several time zones (changing the zone
with `time.tzset` between calls)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.store.rows import local_day

ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # DST of 30 minutes
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30, DST
    "Pacific/Chatham",  # +12:45, DST
    "Africa/Monrovia",  # -0:44:30 until 1972
)


@pytest.fixture
def restore_zone() -> Iterator[None]:
    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def reference(ts: float) -> str:
    return date.fromtimestamp(ts).isoformat()


# Around the local midnights and DST changes of every zone, and anywhere from 1900 to 2100.
times = st.one_of(
    st.floats(min_value=-2.2e9, max_value=4.1e9, allow_nan=False),
    st.integers(-2_200_000_000 // 900, 4_100_000_000 // 900).map(lambda q: q * 900.0),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # TZ reset after
@given(st.lists(st.tuples(st.sampled_from(ZONES), times, st.floats(-90, 90)), max_size=30))
def test_as_date_fromtimestamp_gives_it(restore_zone, calls) -> None:
    for zone, ts, step in calls:
        if os.environ.get("TZ") != zone:
            os.environ["TZ"] = zone
            time.tzset()
        for t in (ts, ts + step, ts, ts - abs(step)):  # the same minute, and neighbours
            assert local_day(t) == reference(t), (zone, t)


def test_every_minute_around_midnights(restore_zone) -> None:
    for zone in ZONES:
        os.environ["TZ"] = zone
        time.tzset()
        start = 1_774_000_000.0  # March 2026: DST changes in both hemispheres
        for second in range(0, 40 * 86400, 61):
            t = start + second + 0.25
            assert local_day(t) == reference(t), (zone, t)


def test_no_memo_where_a_day_starts_inside_a_minute(restore_zone) -> None:
    """Monrovia was at -0:44:30 until 1972: its days began at 00:44:30 UTC, mid-minute."""
    os.environ["TZ"] = "Africa/Monrovia"
    time.tzset()
    midnight = -315_619_200.0 + 44 * 60 + 30  # 1960-01-01 00:44:30 UTC, local midnight
    for ts in (midnight - 10, midnight + 10, midnight - 10):
        assert local_day(ts) == reference(ts)
    assert reference(midnight - 10) != reference(midnight + 10)
