"""A Quote is the arithmetic behind a stored cost: its JSON holds every bucket's units, rate
and source, and recomputes the cost to the nano-dollar."""

from __future__ import annotations

import json

from meterfox_cli.money import to_nanousd
from meterfox_cli.pricing.book import price_record
from meterfox_cli.pricing.quote import Quote
from meterfox_cli.usage import Usage
from tests.pricing.cases import record


def test_detail_holds_rates_and_source_and_recomputes_the_cost():
    usage = Usage(input_tokens=250_000, output_tokens=2_000, reasoning_tokens=1_200)
    price = price_record(record("gemini", "gemini-2.5-pro", usage))
    detail = json.loads(price.detail)
    assert detail["rates_from"].startswith(
        "genai-prices 0.2.3 (bundled data): google/gemini-2.5-pro"
    )
    assert detail["at"] == "2025-08-20T12:00:00Z"
    buckets = {b["key"]: b for b in detail["buckets"]}
    assert buckets["input_tokens"] == {
        "key": "input_tokens",
        "units": "250000",
        "rate": "2.5",
        "per": 1_000_000,
        "cost": "0.625",
        "tier": "prompt > 200,000 tokens",
    }
    assert to_nanousd(Quote.from_json(price.detail).total()) == price.cost_nanousd
