"""Built-in prices for Gemini's explicit context-cache storage, which genai-prices does not
carry: USD per 1,000,000 tokens per hour a cache is kept (`cache_storage_token_hours`, read
from a `cachedContents` creation: its tokens × its TTL). Pure data, below both config and
pricing. Small on purpose: a model missing here leaves its cache creation unpriced (with the
reason), never priced without its storage; `[pricing.cache_storage]` in config.toml adds rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

STORAGE_UNIT = "cache_storage_token_hours"
SOURCE = "ai.google.dev/gemini-api/docs/pricing, context caching storage (seen 2026-11)"

USD_PER_MTOK_HOUR: dict[str, Decimal] = {
    "gemini-2.5-pro": Decimal("4.50"),
    "gemini-2.5-flash": Decimal("1.00"),
    "gemini-2.5-flash-lite": Decimal("1.00"),
    "gemini-2.0-flash": Decimal("1.00"),
}


def storage_rate(model: str, table: Mapping[str, Decimal]) -> tuple[str, Decimal] | None:
    """The table's row for `model`: its own name, else the longest name it starts with (a
    dated version, `gemini-2.5-flash-001`, takes its family's price); None when none fits."""
    name = model.removeprefix("models/").lower()
    fitting = [row for row in table if name == row or name.startswith(row + "-")]
    if not fitting:
        return None
    row = max(fitting, key=len)
    return row, table[row]
