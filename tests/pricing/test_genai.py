"""The genai-prices adapter: provider ids, usage keys, and buckets that add up to genai-prices'
own total."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.money import to_nanousd
from meterfox_cli.pricing.book import price_reading
from meterfox_cli.pricing.genai import genai_usage, pricing_id
from meterfox_cli.pricing.quote import Quote
from meterfox_cli.usage import Reading, Usage
from tests.pricing.cases import utc


def test_pricing_ids_by_provider_slug():
    assert pricing_id("openai") == "openai"
    assert pricing_id("xai") == "x-ai"
    assert pricing_id("gemini") == "google"
    assert pricing_id("google") == "google"
    assert pricing_id("anthropic") == "anthropic"
    assert pricing_id("cohere") == "cohere"
    assert pricing_id("fireworks") == "fireworks"
    assert pricing_id("novita") == "novita"  # a user-declared provider genai-prices knows
    assert pricing_id("replicate") is None
    assert pricing_id("no-such-provider") is None


def test_usage_maps_to_genai_prices_totals_and_parts():
    usage = Usage(
        input_tokens=100,
        cached_tokens=20,
        cache_write_tokens=30,
        cache_write_1h_tokens=10,
        output_tokens=50,
        reasoning_tokens=40,
        units=(("input_audio_tokens", 5.0), ("search_queries", 2.0), ("unknown_unit", 3.0)),
    )
    mapped = genai_usage(usage)
    assert mapped._reported_values() == {
        "input_tokens": 100,
        "cache_read_tokens": 20,
        "cache_write_tokens": 30,
        "cache_write_1h_tokens": 10,
        "output_tokens": 50,
        "output_reasoning_tokens": 40,
        "input_audio_tokens": 5,
        "web_searches": 2,
    }


MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-sonnet-4-0"),
    ("anthropic", "claude-opus-4-1"),
    ("gemini", "gemini-2.5-pro"),
    ("deepseek", "deepseek-chat"),
    ("xai", "grok-4-0709"),
]


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    uncached=st.integers(0, 400_000),
    cached=st.integers(0, 50_000),
    write_5m=st.integers(0, 50_000),
    write_1h=st.integers(0, 50_000),
    visible=st.integers(0, 20_000),
    reasoning=st.integers(0, 20_000),
    hour=st.integers(0, 23),
)
def test_buckets_always_add_up_to_genai_prices_total(
    model, uncached, cached, write_5m, write_1h, visible, reasoning, hour
):
    from genai_prices import calc_price

    provider, name = model
    usage = Usage(
        input_tokens=uncached + cached + write_5m + write_1h,
        cached_tokens=cached,
        cache_write_tokens=write_5m + write_1h,
        cache_write_1h_tokens=write_1h,
        output_tokens=visible + reasoning,
        reasoning_tokens=reasoning,
    )
    at = utc(2026, 5, 5, hour)
    price = price_reading(provider, name, at.timestamp(), Reading(model=name, usage=usage))
    quote = Quote.from_json(price.detail)
    assert "total" not in {b.key for b in quote.buckets}  # no fallback: the split is exact
    library = calc_price(
        genai_usage(usage), name, provider_id=pricing_id(provider), genai_request_timestamp=at
    )
    assert quote.total() == library.total_price
    assert price.cost_nanousd == to_nanousd(library.total_price)
