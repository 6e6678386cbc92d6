"""The tariff fast path prices exactly as the reference path through genai-prices."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.money import to_nanousd
from meterfox_cli.pricing.book import PriceBook, price_reading
from meterfox_cli.pricing.genai import genai_usage, pricing_id
from meterfox_cli.pricing.quote import Price, Quote
from meterfox_cli.usage import Reading, Usage
from tests.pricing.cases import AUG_2025, CASES, Case, D, book

# --- The tariff fast path agrees with genai-prices --------------------------------------------

# Models and what they exercise: cache reads; a per-request fee; service tiers; audio and image
# tokens with their own cache-read rates; 5m/1h cache writes; long-context tiers (Gemini 2.5 Pro,
# Claude Sonnet 4.5); web searches; DeepSeek's off-peak hours; a price that changes by date.
FAST_MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "o4-mini-2025-04-16"),
    ("openai", "gpt-realtime"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-opus-4-1"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gemini", "gemini-2.5-pro"),
    ("gemini", "models/gemini-2.5-flash"),
    ("deepseek", "deepseek-chat"),
    ("xai", "grok-4-0709"),
    ("groq", "llama-3.3-70b-versatile"),
    ("mistral", "mistral-small-latest"),
    ("perplexity", "sonar-pro"),
    ("fireworks", "llama-v3p1-8b-instruct"),
]
# The names genai-prices itself knows these by (MeterFox tries them for the names above).
GENAI_NAMES = {
    "models/gemini-2.5-flash": "gemini-2.5-flash",
    "llama-v3p1-8b-instruct": "accounts/fireworks/models/llama-v3p1-8b-instruct",
}
SERVICE_TIERS = st.sampled_from(
    [
        (),
        (("service_tier", "flex"),),
        (("service_tier", "priority"),),
        (("service_tier", "default"),),
    ]
)


@st.composite
def usages(draw) -> Usage:
    """Usage whose parts never exceed their totals, audio and image tokens included."""
    text, cached_text = draw(st.integers(0, 300_000)), draw(st.integers(0, 40_000))
    audio, cached_audio, image = (draw(st.integers(0, 5_000)) for _ in range(3))
    write_5m, write_1h = draw(st.integers(0, 30_000)), draw(st.integers(0, 30_000))
    visible, reasoning, audio_out = (draw(st.integers(0, 20_000)) for _ in range(3))
    units = {
        "input_audio_tokens": audio + cached_audio,
        "cache_audio_read_tokens": cached_audio,
        "input_image_tokens": image,
        "output_audio_tokens": audio_out,
        "web_search_requests": draw(st.integers(0, 3)),
    }
    return Usage(
        input_tokens=text + cached_text + audio + cached_audio + image + write_5m + write_1h,
        cached_tokens=cached_text + cached_audio,
        cache_write_tokens=write_5m + write_1h,
        cache_write_1h_tokens=write_1h,
        output_tokens=visible + reasoning + audio_out,
        reasoning_tokens=reasoning,
        units=tuple((k, float(v)) for k, v in units.items() if draw(st.booleans()) and v),
    )


@settings(max_examples=600, deadline=None)
@given(
    model=st.sampled_from(FAST_MODELS),
    usage=usages(),
    at=st.datetimes(datetime(2025, 1, 1), datetime(2027, 6, 30), timezones=st.just(UTC)),
    context=SERVICE_TIERS,
)
def test_fast_path_is_the_reference_path_and_genai_prices_own_total(model, usage, at, context):
    from genai_prices import calc_price

    provider, name = model
    reading = Reading(model=name, usage=usage, price_context=context)
    fast = price_reading(provider, name, at.timestamp(), reading)
    assert fast == price_reading(provider, name, at.timestamp(), reading, fast=False)
    try:
        library = calc_price(
            genai_usage(usage),
            GENAI_NAMES.get(name, name),
            provider_id=pricing_id(provider),
            genai_request_timestamp=at,
            price_context=dict(context) or None,
        )
    except ValueError as exc:  # usage genai-prices refuses: unpriced, with its reason
        assert (fast.source, fast.cost_nanousd) == ("unpriced", None)
        assert str(exc) in Quote.from_json(fast.detail).reason
        return
    assert fast.source == "computed", fast.detail
    assert Quote.from_json(fast.detail).total() == library.total_price
    assert fast.cost_nanousd == to_nanousd(library.total_price)


@pytest.mark.parametrize(
    "kind", ["computed", "discount override", "reported cost (list price beside it)"]
)
def test_fast_path_prices_without_genai_prices_per_record_machinery(monkeypatch, kind):
    import meterfox_cli.pricing.genai as pricing

    prices = (
        book([{"provider": "*", "model": "*", "discount": 0.85}]) if "discount" in kind else None
    )
    reported = D("0.0123") if "reported" in kind else None

    def price(case: Case, usage: Usage, **options) -> Price:
        reading = Reading(
            model=case.model, usage=usage, reported_cost_usd=reported, price_context=case.context
        )
        at = case.at.timestamp()
        return price_reading(
            case.provider, case.model, at, reading, prices or PriceBook(), **options
        )

    def refuse(*args, **kwargs):
        raise AssertionError("the reference path ran")

    for case in CASES[:-1]:  # Replicate is not genai-prices'
        other = replace(case.usage, input_tokens=case.usage.input_tokens + 1)
        expected = [price(case, usage, fast=False) for usage in (case.usage, other)]
        price(case, case.usage)  # the first record of a period builds its tariff
        monkeypatch.setattr(pricing, "genai_buckets", refuse)
        monkeypatch.setattr(pricing, "genai_usage", refuse)
        assert [price(case, usage) for usage in (case.usage, other)] == expected, case.name
        monkeypatch.undo()


@pytest.mark.parametrize(
    ("usage", "why"),
    [
        (Usage(units=(("seconds", 4.5),)), "fractional units keep genai-prices' arithmetic"),
        (Usage(input_tokens=10, cached_tokens=50, output_tokens=5), "a part over its total"),
        (Usage(cached_tokens=50, output_tokens=5), "a part without its total"),
        (Usage(input_tokens=-5, output_tokens=5), "a negative count"),
    ],
)
def test_usage_the_fast_path_cannot_represent_takes_the_reference_path(usage, why):
    reading = Reading(model="gpt-4o", usage=usage)
    at = AUG_2025.timestamp()
    try:
        reference = price_reading("openai", "gpt-4o", at, reading, fast=False)
    except ValueError as exc:  # genai-prices refuses a negative count outright
        with pytest.raises(ValueError, match=str(exc)):
            price_reading("openai", "gpt-4o", at, reading)
        return
    assert price_reading("openai", "gpt-4o", at, reading) == reference, why


def test_provider_reported_cost_keeps_the_same_list_price_through_the_fast_path():
    usage = Usage(
        input_tokens=2_000, cached_tokens=1_200, cache_write_tokens=300, output_tokens=150
    )
    reading = Reading(model="anthropic/claude-sonnet-4", usage=usage, reported_cost_usd=D("0.001"))
    at = AUG_2025.timestamp()
    fast = price_reading("openrouter", "anthropic/claude-sonnet-4", at, reading)
    assert fast == price_reading("openrouter", "anthropic/claude-sonnet-4", at, reading, fast=False)
    assert Quote.from_json(fast.detail).list_usd is not None
