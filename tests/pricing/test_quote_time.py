"""`quote_time`, the quote's `at` written from the second's text kept between records, is the
text `isoformat` writes, on any time and in any order of calls."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from meterfox_cli.pricing.quote import quote_time

# From before the epoch to year 9999, whole seconds, carries (x.9999996) and all between.
times = st.one_of(
    st.floats(min_value=-1e9, max_value=253_402_300_799, allow_nan=False),
    st.integers(-1_000_000, 4_000_000_000).map(float),
    st.integers(0, 4_000_000_000).map(lambda s: s + 0.9999996),
    st.integers(0, 4_000_000_000).map(lambda s: s + 0.0000004),
)


def reference(started_at: float) -> str:
    return datetime.fromtimestamp(started_at, UTC).isoformat().replace("+00:00", "Z")


@given(st.lists(times, min_size=1, max_size=20), st.randoms())
def test_as_isoformat_writes_it(started: list[float], rng) -> None:
    # the same second again and again (the memo's hits), neighbours and strangers
    calls = [*started, *(t + rng.random() for t in started), *started]
    for started_at in calls:
        at = datetime.fromtimestamp(started_at, UTC)
        assert quote_time(started_at, at) == reference(started_at)


def test_a_batch_in_time_order() -> None:
    for i in range(3000):
        started_at = 1_764_400_000 + i / 997
        assert quote_time(started_at, datetime.fromtimestamp(started_at, UTC)) == reference(
            started_at
        )
