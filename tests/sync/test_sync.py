"""One provider's sync against the fake admin APIs on loopback: pagination, revised buckets,
retries, refused keys, malformed pages, partial failure, and idempotence over any layout."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.store.billed import COST_API, read_buckets, snapshot, synced_until
from meterfox_cli.store.db import connect
from meterfox_cli.sync.http import AdminKeyRefused, SyncError
from meterfox_cli.sync.run import Window, sync_provider
from meterfox_cli.sync.sources import SOURCES
from tests.fakes.admin_apis import DAY, Billed, FakeAdminAPIs, Fault, serve

NOW = time.time()
TODAY = int(NOW // DAY * DAY)
BASES = {"openai": "", "anthropic": "", "openrouter": "/api"}


@pytest.fixture(scope="module")
def fake_and_url():
    fake = FakeAdminAPIs()
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def fake(fake_and_url):
    fake, _ = fake_and_url
    fake.ledger.clear()
    fake.faults.clear()
    fake.received.clear()
    fake.page_size = 7
    fake.delay_s = 0.0
    fake.malformed = lambda path, query: False
    return fake


def run(conn, fake_and_url, provider, start, end, key=None, waits=None):
    fake, url = fake_and_url
    src = SOURCES[provider]
    api = src.client(url + BASES[provider], key or fake.admin_keys[provider])
    if waits is not None:
        api.sleep = waits.append
    return sync_provider(conn, src, api, Window(start, end))


def entry(provider, days_ago, model="m1", tokens=(1000, 100), cost=("0.001", "0.0004"), **kw):
    return Billed(
        provider,
        TODAY - days_ago * DAY,
        model,
        tokens[0],
        tokens[1],
        requests=7,
        cost_in=Decimal(cost[0]),
        cost_out=Decimal(cost[1]),
        **kw,
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic", "openrouter"])
def test_pages_across_at_least_three(conn, fake, fake_and_url, provider):
    fake.page_size = 1
    fake.ledger += [entry(provider, n, model=f"m{n}") for n in (1, 2, 3, 4)]
    summary = run(conn, fake_and_url, provider, TODAY - 5 * DAY, TODAY)
    buckets = read_buckets(conn)
    assert [b.bucket_start for b in buckets] == [TODAY - n * DAY for n in (4, 3, 2, 1)]
    assert summary.buckets == 4 and summary.input_tokens == 4000 and summary.output_tokens == 400
    assert summary.cost_nanousd == 4 * 1_400_000  # $0.0014 each
    usage_path = {
        "openai": "/v1/organization/usage/completions",
        "anthropic": "/v1/organizations/usage_report/messages",
        "openrouter": "/api/v1/activity",
    }[provider]
    assert fake.paths().count(usage_path) >= 3
    cursors = [dict(s.query).get("page") for s in fake.received if s.path == usage_path]
    if provider != "openrouter":  # activity is asked day by day
        assert cursors[:3] == [None, "page_1", "page_2"]


def test_anthropic_maps_like_the_adapter_and_reads_cents(conn, fake, fake_and_url):
    fake.ledger.append(
        entry(
            "anthropic",
            1,
            model="claude-3-5-haiku-20241022",
            tokens=(1000, 50),
            cost=("0.12345", "0.001"),
            cached_tokens=300,
            cache_write_tokens=200,
        )
    )
    summary = run(conn, fake_and_url, "anthropic", TODAY - 2 * DAY, TODAY)
    (b,) = read_buckets(conn)
    # uncached 500 + cache reads 300 + cache writes 200 = 1000 input, as providers/anthropic.py
    assert (b.input_tokens, b.cached_tokens, b.cache_write_tokens) == (1000, 300, 200)
    assert b.requests is None and summary.requests is None
    # "12.345" cents + "0.1" cents = $0.12445
    assert b.cost_nanousd == 124_450_000 and b.cost_source == COST_API


def test_a_revised_bucket_replaces_the_old_one(conn, fake, fake_and_url):
    revised = entry("openai", 1)
    fake.ledger += [entry("openai", 2), revised]
    run(conn, fake_and_url, "openai", TODAY - 3 * DAY, TODAY)
    revised.output_tokens, revised.cost_out = 900, Decimal("0.0036")
    run(conn, fake_and_url, "openai", TODAY - 3 * DAY, TODAY)
    buckets = read_buckets(conn)
    assert [b.output_tokens for b in buckets] == [100, 900]
    assert [b.cost_nanousd for b in buckets] == [1_400_000, 4_600_000]


def test_429_honours_retry_after_and_500_is_retried(conn, fake, fake_and_url):
    fake.ledger.append(entry("openai", 1))
    fake.fail("/v1/organization/costs", Fault(429, headers={"Retry-After": "3"}), Fault(500))
    waits: list[float] = []
    summary = run(conn, fake_and_url, "openai", TODAY - 2 * DAY, TODAY, waits=waits)
    assert waits == [3.0, 1.0]  # Retry-After, then the backoff's second step
    assert summary.cost_nanousd == 1_400_000


def test_retries_are_bounded(conn, fake, fake_and_url):
    fake.fail("/api/v1/activity", *[Fault(503)] * 5)
    with pytest.raises(SyncError, match="503 after 5 attempts"):
        run(conn, fake_and_url, "openrouter", TODAY - 2 * DAY, TODAY, waits=[])


@pytest.mark.parametrize(
    ("provider", "named"),
    [
        ("openai", "platform.openai.com/settings/organization/admin-keys"),
        ("anthropic", "console.anthropic.com/settings/admin-keys"),
        ("openrouter", "openrouter.ai/settings/provisioning-keys"),
    ],
)
def test_a_plain_key_is_refused_in_one_sentence(conn, fake, fake_and_url, provider, named):
    with pytest.raises(AdminKeyRefused) as caught:
        run(conn, fake_and_url, provider, TODAY - 2 * DAY, TODAY, key="sk-plain-api-key")
    message = str(caught.value)
    assert named in message and "(401)" in message and "sk-plain" not in message
    assert synced_until(conn, provider) is None


def test_a_malformed_page_keeps_what_was_committed_and_names_what_is_left(conn, fake, fake_and_url):
    fake.ledger += [entry("openai", n) for n in (1, 9)]
    start = TODAY - 10 * DAY
    # the first 7-day chunk syncs; the second chunk's usage page is broken
    fake.malformed = lambda path, q: path.endswith("/completions") and int(q["start_time"]) > start
    try:
        with pytest.raises(SyncError) as caught:
            run(conn, fake_and_url, "openai", start, TODAY)
    finally:
        fake.malformed = lambda path, q: False
    chunk_end = start + 7 * DAY
    assert "malformed page" in str(caught.value)
    assert f"left: {_day(chunk_end)} → {_day(TODAY - 1)}" in str(caught.value)
    assert [b.bucket_start for b in read_buckets(conn)] == [TODAY - 9 * DAY]  # chunk 1 kept
    assert synced_until(conn, "openai") == chunk_end
    run(conn, fake_and_url, "openai", chunk_end, TODAY)  # the next run fills it
    assert [b.bucket_start for b in read_buckets(conn)] == [TODAY - 9 * DAY, TODAY - DAY]


def test_sync_never_touches_proxy_records(conn, fake, fake_and_url):
    from tests.fakes.records import Req, record_to

    record_to(Path(conn.execute("PRAGMA database_list").fetchone()[2]), Req(ts=NOW - DAY))
    before = conn.execute("SELECT * FROM requests").fetchall()
    fake.ledger.append(entry("openai", 1))
    run(conn, fake_and_url, "openai", TODAY - 3 * DAY, TODAY)
    assert conn.execute("SELECT * FROM requests").fetchall() == before


def _day(ts: int) -> str:
    from meterfox_cli.sync.pages import utc_day

    return utc_day(ts)


layouts = st.lists(
    st.tuples(
        st.sampled_from(["openai", "anthropic", "openrouter"]),
        st.integers(0, 20),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 10**6),
        st.integers(0, 10**5),
        st.booleans(),
    ),
    max_size=12,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(layout=layouts, page_size=st.integers(1, 8), days=st.integers(1, 21))
def test_syncing_a_window_twice_leaves_identical_tables(
    tmp_path, fake_and_url, layout, page_size, days
):
    fake, _ = fake_and_url
    fake.ledger.clear()
    fake.faults.clear()
    fake.page_size = page_size
    seen = set()
    for provider, ago, model, tin, tout, with_cost in layout:
        if (provider, ago, model) in seen:
            continue
        seen.add((provider, ago, model))
        fake.ledger.append(
            entry(
                provider,
                ago + 1,
                model,
                (tin, tout),
                (str(tin / 10**9), "0.0001"),
                with_cost=with_cost,
            )
        )
    path = tmp_path / f"p{time.monotonic_ns()}.db"
    conn = connect(path)
    try:
        start = TODAY - days * DAY
        for provider in ("openai", "anthropic", "openrouter"):
            run(conn, fake_and_url, provider, start, TODAY)
        first = snapshot(conn)
        for provider in ("openai", "anthropic", "openrouter"):
            run(conn, fake_and_url, provider, start, TODAY)
        assert snapshot(conn) == first
        expected = {(b.provider, b.day, b.model) for b in fake.ledger if b.day >= start}
        assert {(r[0], r[1], r[3]) for r in first} == expected
    finally:
        conn.close()


def test_the_window_resumes_48_hours_back_and_keeps_to_what_the_api_publishes(conn):
    from meterfox_cli.store.billed import replace_window
    from meterfox_cli.sync.run import sync_window

    now = TODAY + 13 * 3600
    openai, openrouter = SOURCES["openai"], SOURCES["openrouter"]
    first = sync_window(conn, openai, None, None, now)
    assert (first.start, first.end) == (TODAY - 30 * DAY, int(now))  # 30 days the first time
    replace_window(conn, "openai", TODAY - 5 * DAY, int(now), [], now)
    resumed = sync_window(conn, openai, None, None, now + 3600)
    assert resumed.start == TODAY - 2 * DAY  # now - 48 h, back to its UTC midnight
    routed = sync_window(conn, openrouter, now - 60 * DAY, None, now)
    assert (routed.start, routed.end) == (TODAY - 30 * DAY, TODAY)  # 30 complete days
    with pytest.raises(SyncError, match="complete UTC days only"):
        sync_window(conn, openrouter, TODAY, None, now)
