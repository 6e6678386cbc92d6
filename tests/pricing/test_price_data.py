"""A local prices file replaces the bundled genai-prices data, offline, and back."""

from __future__ import annotations

import json

from meterfox_cli.pricing.book import price_reading, price_record
from meterfox_cli.pricing.price_data import load_prices_file, use_bundled_prices
from meterfox_cli.pricing.quote import Quote
from meterfox_cli.usage import Reading, Usage
from tests.pricing.cases import AUG_2025, D, record, usd


def test_prices_file_replaces_the_bundled_data_offline(tmp_path):
    data = [
        {
            "id": "openai",
            "name": "OpenAI",
            "api_pattern": "https://api\\.openai\\.com",
            "models": [
                {
                    "id": "gpt-9",
                    "match": {"equals": "gpt-9"},
                    "prices": {"input_mtok": 7, "output_mtok": 21},
                }
            ],
        }
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    try:
        assert load_prices_file(str(path)) == 1
        price = price_record(record("openai", "gpt-9", usage))
        assert (price.source, usd(price.cost_nanousd)) == ("computed", D("28"))
        assert f"(prices file {path})" in Quote.from_json(price.detail).rates_from
        assert price_record(record("openai", "gpt-4o", usage)).source == "unpriced"
    finally:
        use_bundled_prices()
    assert price_record(record("openai", "gpt-4o", usage)).source == "computed"


def test_price_data_genai_prices_rejects_is_reported_the_same_way_by_both_paths(tmp_path):
    data = [
        {
            "id": "openai",
            "name": "OpenAI",
            "api_pattern": "https://api\\.openai\\.com",
            "models": [
                {
                    "id": "gpt-9",
                    "match": {"equals": "gpt-9"},
                    "prices": {"input_mtok": -7, "output_mtok": 21},
                }
            ],
        }
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    reading = Reading(model="gpt-9", usage=Usage(input_tokens=10, output_tokens=10))
    at = AUG_2025.timestamp()
    try:
        load_prices_file(str(path))
        fast = price_reading("openai", "gpt-9", at, reading)
        assert fast == price_reading("openai", "gpt-9", at, reading, fast=False)
    finally:
        use_bundled_prices()
    assert (fast.source, fast.cost_nanousd) == ("unpriced", None)
    assert "Invalid price value for input_mtok" in Quote.from_json(fast.detail).reason
