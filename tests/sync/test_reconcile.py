"""`reconcile`, the pure function: each status from a case built for it, every number by the
test's own arithmetic, and properties over any shape of input."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterfox_cli.store.billed import ACTIVITY, COMPUTED, COST_API, BilledBucket, ProxiedSum
from meterfox_cli.sync.reconcile import by_stake, reconcile, totals

DAY = 86400
D1 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp())
NOW = D1 + 10 * DAY  # every day here is long past: not "not published yet"


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def billed(
    model="m",
    *,
    start=D1,
    provider="openai",
    tokens=(1000, 100),
    cost=5000,
    source=COST_API,
    requests=10,
):
    return BilledBucket(
        provider,
        start,
        start + DAY,
        model,
        requests=requests,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_nanousd=cost,
        cost_source=source,
    )


def proxied(model="m", *, ts=D1, provider="openai", tokens=(1000, 100), cost=5000, requests=10):
    return ProxiedSum(day(ts), provider, model, requests, tokens[0], tokens[1], cost)


def one(rows):
    assert len(rows) == 1, rows
    return rows[0]


def test_match_within_the_tolerance_with_every_number():
    row = one(reconcile([proxied(tokens=(990, 100), cost=4950)], [billed()], now=NOW))
    assert row.status == "match"
    assert (row.day, row.provider, row.model) == (day(D1), "openai", "m")
    assert (row.proxied_requests, row.proxied_input_tokens, row.proxied_output_tokens) == (
        10,
        990,
        100,
    )
    assert (row.billed_requests, row.billed_input_tokens, row.billed_output_tokens) == (
        10,
        1000,
        100,
    )
    assert (row.proxied_cost_nanousd, row.billed_cost_nanousd) == (4950, 5000)
    assert row.coverage == Decimal("0.9900")  # 4950 / 5000
    assert row.stake_nanousd == 50


def test_bypassed_when_billed_exceeds_proxied():
    row = one(reconcile([proxied(tokens=(500, 50), cost=2500)], [billed()], now=NOW))
    assert row.status == "bypassed"
    assert row.coverage == Decimal("0.5000")
    assert "550 billed tokens" in row.note  # (1000 + 100) - (500 + 50)
    assert row.stake_nanousd == 2500


def test_billed_with_nothing_proxied_is_bypassed():
    row = one(reconcile([], [billed()], now=NOW))
    assert row.status == "bypassed" and row.proxied_requests == 0 and row.coverage == 0


def test_proxy_only_names_an_old_bucket_as_not_billed():
    row = one(reconcile([proxied()], [], now=NOW))
    assert row.status == "proxy_only"
    assert row.billed_cost_nanousd is None and row.billed_requests is None
    assert "9 days ago" in row.note and "another organisation" in row.note  # ended D1 + 1 day


def test_proxy_only_names_a_young_bucket_as_not_published_yet():
    row = one(reconcile([proxied(ts=NOW - 3600)], [], now=NOW))
    assert row.status == "proxy_only"
    assert "not have published it yet" in row.note


def test_price_mismatch_names_both_effective_rates():
    # 1,100 tokens: ours $0.005 → $4.545…/Mtok; billed $0.0066 → $6.00/Mtok
    row = one(reconcile([proxied(cost=5_000_000)], [billed(cost=6_600_000)], now=NOW))
    assert row.status == "price_mismatch"
    assert "our price $4.55/Mtok vs billed $6.00/Mtok" in row.note


def test_a_computed_billed_cost_is_not_the_providers_word():
    row = one(reconcile([proxied(cost=5000)], [billed(cost=9999, source=COMPUTED)], now=NOW))
    assert row.billed_cost_nanousd is None
    assert row.status == "match"  # tokens decide
    assert row.coverage == Decimal("1.0000")  # tokens 1100 / 1100


def test_snapshot_and_alias_meet_in_one_row():
    canonical = {"gpt-4o-mini-2024-07-18": "gpt-4o-mini"}.get
    rows = reconcile(
        [proxied("gpt-4o-mini")],
        [billed("gpt-4o-mini-2024-07-18")],
        now=NOW,
        canonical=lambda provider, model: canonical(model, model),
    )
    assert one(rows).model == "gpt-4o-mini" and rows[0].status == "match"


def test_anthropic_has_no_request_counts():
    row = one(
        reconcile(
            [proxied(provider="anthropic")], [billed(provider="anthropic", requests=None)], now=NOW
        )
    )
    assert row.billed_requests is None and row.status == "match"
    assert totals([row]).billed_requests is None


def test_totals_and_money_order():
    rows = reconcile(
        [proxied("a", cost=100), proxied("b", cost=5000)],
        [billed("a", cost=100), billed("b", cost=9000), billed("c", cost=700, source=ACTIVITY)],
        now=NOW,
    )
    assert [r.model for r in rows] == ["a", "b", "c"]
    assert [r.model for r in by_stake(rows)] == ["b", "c", "a"]  # 4000, 700, 0
    total = totals(rows)
    assert total.proxied_cost_nanousd == 5100 and total.billed_cost_nanousd == 9800
    assert total.coverage == Decimal("0.5204")  # 5100 / 9800, to four places
    assert total.billed_input_tokens == 3000


def test_by_provider_sums_the_days():
    rows = reconcile(
        [proxied(ts=D1), proxied(ts=D1 + DAY)],
        [billed(start=D1), billed(start=D1 + DAY, cost=7000)],
        by=("provider",),
        now=NOW,
    )
    row = one(rows)
    assert row.day is None and row.model is None
    assert (row.proxied_cost_nanousd, row.billed_cost_nanousd) == (10000, 12000)
    assert row.proxied_input_tokens == row.billed_input_tokens == 2000
    assert row.status == "price_mismatch"


# --- properties ---------------------------------------------------------------------------

models = st.sampled_from(["a", "b", "c"])
providers = st.sampled_from(["openai", "anthropic", "openrouter"])
days = st.integers(0, 5).map(lambda n: D1 + n * DAY)
usage = st.tuples(
    st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 10**9), st.integers(0, 100)
)
entries = st.lists(st.tuples(providers, days, models, usage), max_size=20)
dims = st.sampled_from(
    [("day", "provider", "model"), ("day",), ("provider",), ("model",), ("provider", "model")]
)


def _same_both_sides(entries):
    p = [
        proxied(m, ts=d, provider=pr, tokens=(i, o), cost=c, requests=n)
        for pr, d, m, (i, o, c, n) in entries
    ]
    b = [
        billed(m, start=d, provider=pr, tokens=(i, o), cost=c, requests=n)
        for pr, d, m, (i, o, c, n) in entries
    ]
    return p, b


@given(entries, dims)
def test_identical_sides_always_match(entries, by):
    p, b = _same_both_sides(entries)
    rows = reconcile(p, b, by=by, now=NOW)
    assert all(r.status == "match" for r in rows)
    total = totals(rows)
    assert total.proxied_cost_nanousd == sum(e[3][2] for e in entries)
    assert total.billed_input_tokens == total.proxied_input_tokens == sum(e[3][0] for e in entries)


@given(entries, dims, st.integers(5, 100))
def test_billed_more_by_more_than_the_tolerance_is_never_match(entries, by, percent):
    p, b = _same_both_sides(entries)
    bigger = [
        BilledBucket(
            x.provider,
            x.bucket_start,
            x.bucket_end,
            x.model,
            requests=x.requests,
            input_tokens=x.input_tokens * (100 + percent) // 100 + 10,
            output_tokens=x.output_tokens,
            cost_nanousd=x.cost_nanousd,
            cost_source=x.cost_source,
        )
        for x in b
    ]
    rows = reconcile(p, bigger, by=by, now=NOW)
    assert all(r.status == "bypassed" for r in rows)
    assert len(rows) == len({tuple(getattr(r, d) for d in by) for r in rows})  # one row per group
