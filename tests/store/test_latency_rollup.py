"""The latency rollup (migration 010) counts every request in its bucket, whoever writes, and
the dashboard's per-provider p50/p95 from it are within half a bucket of the exact values."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.store.db import connect
from meterfox_cli.store.latency import (
    LATENCY_BUCKET_SQL,
    latency_bucket,
    nearest_rank,
    provider_latency,
)
from meterfox_cli.store.select import TimeRange
from tests.fakes.records import Req, at, insert


def counts(conn) -> list[tuple]:
    return conn.execute(
        "SELECT utc_day, provider, bucket, requests FROM latency_rollup WHERE requests != 0 "
        "ORDER BY 1, 2, 3"
    ).fetchall()


def recomputed(conn) -> list[tuple]:
    bucket = LATENCY_BUCKET_SQL.format(ms="latency_ms")
    return conn.execute(
        f"SELECT CAST(ts / 86400 AS INTEGER), provider, {bucket}, COUNT(*) FROM requests "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).fetchall()


def test_the_buckets_in_sql_and_in_python_are_the_same(conn):
    for ms in (0.2, 1.0, 99.9, 100.0, 104.5, 999.99, 1234.5, 98_765.4, 1_234_567.0, 12e6):
        (low,) = conn.execute(
            f"SELECT {LATENCY_BUCKET_SQL.format(ms=':ms')}", {"ms": ms}
        ).fetchone()
        assert (low, latency_bucket(ms)[1]) == latency_bucket(ms), ms
        assert low <= ms < low + latency_bucket(ms)[1]
        assert ms < 100 or latency_bucket(ms)[1] / 2 <= 0.05 * ms


def test_inserts_updates_and_deletes_are_counted(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:05"), latency_ms=120.0),
        Req(at("2026-11-03 23:59"), provider="groq", latency_ms=4321.0),
        Req(at("2026-11-04 00:01"), latency_ms=7.5),
    )
    assert counts(conn) == recomputed(conn)
    conn.execute("UPDATE requests SET latency_ms = latency_ms * 3 WHERE provider = 'groq'")
    conn.execute("UPDATE requests SET cost_nanousd = 5")  # not a latency: nothing moves
    assert counts(conn) == recomputed(conn)
    conn.execute("DELETE FROM requests WHERE latency_ms < 10")
    assert counts(conn) == recomputed(conn)


BASE = at("2026-11-02 00:00")
DAY = 86400.0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(
        st.builds(
            Req,
            ts=st.floats(0, 3 * DAY, allow_nan=False).map(lambda s: BASE + s),
            provider=st.sampled_from(["openai", "groq", "anthropic"]),
            latency_ms=st.floats(0.1, 200_000, allow_nan=False),
        ),
        max_size=60,
    ),
    since=st.one_of(st.none(), st.floats(-DAY, 3 * DAY).map(lambda s: BASE + s)),
    until=st.one_of(st.none(), st.floats(-DAY, 4 * DAY).map(lambda s: BASE + s)),
)
def test_provider_percentiles_are_within_half_a_bucket_of_exact(
    tmp_path_factory, requests, since, until
):
    conn = connect(tmp_path_factory.mktemp("lat") / "meterfox.db")
    try:
        insert(conn, *requests)
        found = provider_latency(conn, TimeRange(since, until))
    finally:
        conn.close()
    inside = [
        r for r in requests if (since is None or r.ts >= since) and (until is None or r.ts < until)
    ]
    assert set(found) == {r.provider for r in inside}
    for provider, figures in found.items():
        ordered = sorted(r.latency_ms for r in inside if r.provider == provider)
        for p, name in ((0.50, "latency_p50_ms"), (0.95, "latency_p95_ms")):
            exact = nearest_rank(ordered, p)
            low, width = latency_bucket(exact)
            assert figures[name] == low + width / 2, (provider, p)
            assert math.isclose(figures[name], exact, abs_tol=0.5, rel_tol=0.05)
